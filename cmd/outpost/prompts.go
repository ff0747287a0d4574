package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/outpost-migrate/outpost/report"
)

// confirm asks on the terminal; without one it refuses (exit 64).
func (inv *invocation) confirm(question string) error {
	if inv.c.o.yes {
		return nil
	}
	if !inv.e.stdinTTY {
		return report.E(report.CodeConfirmationRequired, "%s needs --yes when there is no terminal to ask on; nothing was changed", inv.rep.Command)
	}
	fmt.Fprintf(inv.e.stderr, "%s [y/N] ", question)
	line, err := bufio.NewReader(inv.e.stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return report.Wrap(report.CodeCancelled, err, "no answer")
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		// The report's duration is the work's, not the wait at the prompt.
		inv.rep.StartedAt = time.Now().UTC()
		return nil
	}
	return report.E(report.CodeCancelled, "cancelled at the prompt; nothing was changed")
}

// show writes to stderr what a command is about to do.
func (inv *invocation) show(format string, args ...any) {
	fmt.Fprintf(inv.scrub.Writer(inv.e.stderr), format, args...)
}

// confirmApply shows the plan's rows; nothing to ask when nothing is
// pending (apply then reports up_to_date).
func confirmApply(ctx context.Context, inv *invocation, w *wiring) (string, error) {
	plan := report.New(report.KindPlan, "plan", toolInfo())
	if err := w.runner.Plan(ctx, plan); err != nil {
		return "", err
	}
	if plan.Outcome == report.OutcomeUpToDate {
		return "", nil
	}
	n := 0
	var b strings.Builder
	for _, m := range plan.Migrations {
		if m.State == "pending" || m.State == "partial" {
			n++
			report.WriteRow(&b, plan, m)
		}
	}
	inv.show("apply will run, in this order:\n%s\n", b.String())
	return fmt.Sprintf("Apply %d pending %s to %s?", n, plural(n, "migration", "migrations"), describeTargets(inv.rep.Targets)), nil
}

// confirmUnlock names the holder; with no lock there is nothing to ask.
func confirmUnlock(ctx context.Context, inv *invocation, w *wiring) (string, error) {
	l, err := w.runner.Locker.Inspect(ctx)
	if err != nil {
		return "", err
	}
	if l == nil || l.State == "free" {
		return "", nil
	}
	inv.show("the migration lock %s is held by %s\n", l.Key, report.DescribeHolder(l))
	return "Remove it? Make sure that run is not still working.", nil
}

// confirmCleanup says how many legacy keys are concerned.
func confirmCleanup(ctx context.Context, inv *invocation, w *wiring) (string, error) {
	if w.rphase == nil {
		return "Run cleanup?", nil
	}
	m, copied, err := w.rphase.CleanupScope(ctx)
	if err != nil {
		return "", err
	}
	if copied > 0 {
		inv.show("cleanup deletes the legacy keys that %s copied (%s recorded), each only where its copy verifies\n", m, report.Count(copied))
		return fmt.Sprintf("Delete up to %s legacy keys from %s?", report.Count(copied), describeTargets(inv.rep.Targets)), nil
	}
	return fmt.Sprintf("Delete the legacy keys whose copies verify from %s?", describeTargets(inv.rep.Targets)), nil
}

// confirmForce shows the recorded version it replaces.
func confirmForce(ctx context.Context, inv *invocation, w *wiring) (string, error) {
	if w.ch != nil {
		v, dirty, err := w.ch.Version(ctx)
		if err != nil {
			return "", err
		}
		inv.show("%s records version %d (dirty %v)\n", w.ch.Target().VersionTable, v, dirty)
		return fmt.Sprintf("Record ClickHouse schema version %d as clean?", inv.c.o.forceVersion), nil
	}
	v, dirty, err := w.sql.Version(ctx)
	if err != nil {
		return "", err
	}
	state := "clean"
	if dirty {
		state = "dirty"
	}
	inv.show("schema_migrations records version %d (%s)\n", v, state)
	return fmt.Sprintf("Record PostgreSQL schema version %d as clean?", inv.c.o.forceVersion), nil
}

func describeTargets(t *report.Targets) string {
	var parts []string
	if t.Postgres != nil {
		parts = append(parts, "postgres "+net.JoinHostPort(t.Postgres.Host, t.Postgres.Port)+"/"+t.Postgres.Database)
	}
	if t.Redis != nil {
		parts = append(parts, "redis "+t.Redis.Addr)
	}
	return strings.Join(parts, " and ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
