package main

import (
	"os"
	"path/filepath"

	"github.com/outpost-migrate/outpost/report"
)

// savePlan writes the finished plan to --out FILE: atomically (a temporary
// file renamed over it), so a reviewer never reads half a plan.
func (inv *invocation) savePlan() error {
	if inv.c.o.planOut == "" {
		return nil
	}
	path := inv.c.o.planOut
	sp, err := report.NewSavedPlan(inv.rep, report.DefaultPlanTolerance)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".outpost-plan-*")
	if err != nil {
		return report.Wrap(report.CodeConfig, err, "plan --out %s: cannot write there", path)
	}
	defer os.Remove(tmp.Name())
	if err := sp.Encode(tmp); err != nil {
		tmp.Close()
		return report.Wrap(report.CodeConfig, err, "plan --out %s", path)
	}
	if err := tmp.Close(); err != nil {
		return report.Wrap(report.CodeConfig, err, "plan --out %s", path)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return report.Wrap(report.CodeConfig, err, "plan --out %s", path)
	}
	if inv.rep.Extra == nil {
		inv.rep.Extra = map[string]any{}
	}
	inv.rep.Extra["saved_plan"] = map[string]any{"path": path, "digest": sp.Digest, "pending": len(sp.Pending)}
	inv.rep.Msg += "; plan saved to " + path + ": apply it with `outpost migrate apply --plan " + path + "`"
	return nil
}

// savedPlan reads apply --plan FILE, or returns nil without the flag.
func (inv *invocation) savedPlan() (*report.SavedPlan, error) {
	if inv.c.o.planFile == "" {
		return nil, nil
	}
	if inv.c.o.target != "" {
		return nil, report.E(report.CodeUsage, "--plan and --target do not go together: the plan says where apply stops")
	}
	f, err := os.Open(inv.c.o.planFile)
	if err != nil {
		return nil, report.Wrap(report.CodeConfig, err, "apply --plan")
	}
	defer f.Close()
	return report.ReadSavedPlan(f)
}
