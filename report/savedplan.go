package report

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// KindSavedPlan is the kind of the document `plan --out FILE` writes.
const KindSavedPlan = "SavedPlan"

// DefaultPlanTolerance is how far (relative) a counted or estimated amount
// may move between plan and apply before a saved plan no longer holds.
const DefaultPlanTolerance = 0.10

// SavedPlan pins a reviewed plan, like `terraform plan -out`: apply --plan
// applies exactly these migrations, in this order, and refuses when the
// stores no longer match what the plan saw. Digest is the SHA-256 of the
// document with Digest empty: it catches an edited or truncated file (it is
// not a signature: anyone who can write the file can recompute it).
type SavedPlan struct {
	APIVersion string    `json:"api_version"`
	Kind       string    `json:"kind"`
	CreatedAt  time.Time `json:"created_at"`
	RunID      string    `json:"run_id"`
	Tool       Tool      `json:"tool"`
	Targets    *Targets  `json:"targets"`
	// Pending are the migrations apply will run, in order.
	Pending []PlannedMigration `json:"pending"`
	// SQLVersion and SQLDirty are the log store's schema version as plan saw
	// it (nil without a SQL phase).
	SQLVersion *int    `json:"sql_version,omitempty"`
	SQLDirty   bool    `json:"sql_dirty"`
	Tolerance  float64 `json:"tolerance"`
	Digest     string  `json:"digest"`
}

// PlannedMigration is one pending migration as plan saw it.
type PlannedMigration struct {
	ID       string    `json:"id"`
	State    State     `json:"state"`
	Checksum string    `json:"checksum,omitempty"`
	Estimate *Estimate `json:"estimate,omitempty"`
}

// Checksum is the checksum of a migration's definition: the hex SHA-256 of
// its parts (the SQL file; a Redis migration's name and description).
func Checksum(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		_, _ = io.WriteString(h, p)
		_, _ = h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// NewSavedPlan turns a finished plan report into the document to save.
func NewSavedPlan(plan *Report, tolerance float64) (*SavedPlan, error) {
	if plan.Kind != "PlanReport" || plan.Error != nil {
		return nil, E(CodeInternal, "report: a saved plan is made from a successful plan report, not %s", plan.Kind)
	}
	sp := &SavedPlan{APIVersion: APIVersion, Kind: KindSavedPlan, CreatedAt: plan.StartedAt,
		RunID: plan.RunID, Tool: plan.Tool, Targets: plan.Targets, Tolerance: tolerance}
	sp.SQLVersion, sp.SQLDirty = SQLSchemaState(plan.Migrations)
	for _, l := range plan.Migrations {
		if l.State.Unfinished() {
			sp.Pending = append(sp.Pending, PlannedMigration{ID: l.ID, State: l.State, Checksum: l.Checksum, Estimate: l.Estimate})
		}
	}
	d, err := sp.digest()
	if err != nil {
		return nil, err
	}
	sp.Digest = d
	return sp, nil
}

// SQLSchemaState is the schema version a list of SQL lines records (the
// highest applied version, 0 for none; nil when there are no SQL lines) and
// whether a version is dirty.
func SQLSchemaState(lines []Migration) (version *int, dirty bool) {
	for _, l := range lines {
		if l.Backend != "sql" && l.Backend != "clickhouse" { // the log store, either kind
			continue
		}
		if version == nil {
			version = new(int)
		}
		switch l.State {
		case StateApplied:
			*version = max(*version, l.Version)
		case StateDirty, StatePartial:
			dirty = true
		}
	}
	return version, dirty
}

func (sp *SavedPlan) digest() (string, error) {
	c := *sp
	c.Digest = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return "", E(CodeInternal, "report: encode saved plan: %v", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Encode writes the saved plan as indented JSON (it is meant to be read in
// a review).
func (sp *SavedPlan) Encode(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sp)
}

// maxSavedPlan bounds what ReadSavedPlan reads: a plan lists a handful of
// migrations, so anything larger is not one.
const maxSavedPlan = 1 << 20

// ReadSavedPlan reads and checks a saved plan: valid against its published
// schema, of this tool's API version, and with an intact digest. A file that
// fails any of these is refused with CodePlanMismatch.
func ReadSavedPlan(r io.Reader) (*SavedPlan, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSavedPlan+1))
	if err != nil {
		return nil, Wrap(CodeConfig, err, "read the saved plan")
	}
	if len(b) > maxSavedPlan {
		return nil, E(CodePlanMismatch, "the saved plan is over %d bytes: not a plan this tool wrote", maxSavedPlan)
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, E(CodePlanMismatch, "the saved plan is not JSON: %v", err)
	}
	if err := validateAs("savedplan", v); err != nil {
		return nil, E(CodePlanMismatch, "the file is not a saved plan of %s: %v", APIVersion, err)
	}
	var sp SavedPlan
	if err := json.Unmarshal(b, &sp); err != nil {
		return nil, E(CodePlanMismatch, "the saved plan does not decode: %v", err)
	}
	want, err := sp.digest()
	if err != nil {
		return nil, err
	}
	if want != sp.Digest {
		return nil, E(CodePlanMismatch, "the saved plan was changed after plan wrote it (digest %s, content hashes to %s); make a new plan", short(sp.Digest), short(want))
	}
	return &sp, nil
}

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// Mismatch lists how the stores, seen by a fresh plan, differ from a saved
// plan in ways that matter; empty when apply may go ahead.
func (sp *SavedPlan) Mismatch(now *Report) []string {
	var out []string
	if now.Tool.Version != sp.Tool.Version {
		out = append(out, fmt.Sprintf("the plan was made by outpost %s, this is %s", sp.Tool.Version, now.Tool.Version))
	}
	out = append(out, targetMismatch(sp.Targets, now.Targets)...)
	v, dirty := SQLSchemaState(now.Migrations)
	if !sameVersion(sp.SQLVersion, v) || dirty != sp.SQLDirty {
		out = append(out, fmt.Sprintf("the SQL schema is now at %s, the plan saw %s", versionText(v, dirty), versionText(sp.SQLVersion, sp.SQLDirty)))
	}
	out = append(out, sp.pendingMismatch(now.Migrations)...)
	return out
}

func (sp *SavedPlan) pendingMismatch(lines []Migration) []string {
	var now []Migration
	for _, l := range lines {
		if l.State.Unfinished() {
			now = append(now, l)
		}
	}
	if len(now) != len(sp.Pending) {
		return []string{fmt.Sprintf("%d migrations are pending now, the plan has %d", len(now), len(sp.Pending))}
	}
	var out []string
	for i, p := range sp.Pending {
		l := now[i]
		switch {
		case l.ID != p.ID:
			out = append(out, fmt.Sprintf("pending migration %d is now %s, the plan has %s", i+1, l.ID, p.ID))
		case l.Checksum != p.Checksum:
			out = append(out, fmt.Sprintf("%s has checksum %s now, %s in the plan", p.ID, short(l.Checksum), short(p.Checksum)))
		case !withinTolerance(p.Estimate, l.Estimate, sp.Tolerance):
			out = append(out, fmt.Sprintf("%s would touch %s now, %s in the plan (tolerance %.0f%%)", p.ID, amount(l.Estimate), amount(p.Estimate), sp.Tolerance*100))
		}
	}
	return out
}

func targetMismatch(a, b *Targets) []string {
	ja, _ := json.Marshal(storesOf(a))
	jb, _ := json.Marshal(storesOf(b))
	if bytes.Equal(ja, jb) {
		return nil
	}
	return []string{fmt.Sprintf("the stores differ from the plan's: plan %s, now %s", ja, jb)}
}

// storesOf is t without what names no store: the config file the settings
// came from may differ between plan and apply (a .env in CI, a mounted
// /config/outpost/config.yaml in the cluster) while the stores are the same.
func storesOf(t *Targets) *Targets {
	if t == nil {
		return nil
	}
	c := *t
	c.ConfigFile = ""
	return &c
}

func sameVersion(a, b *int) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func versionText(v *int, dirty bool) string {
	if v == nil {
		return "no SQL store"
	}
	s := fmt.Sprintf("version %d", *v)
	if dirty {
		s += " (dirty)"
	}
	return s
}

// withinTolerance compares two amounts: both absent, or the same units with
// values within tol of the planned one (at least 1 either way, so that tiny
// keyspaces do not trip on one record).
func withinTolerance(plan, now *Estimate, tol float64) bool {
	if plan == nil || now == nil {
		return plan == now
	}
	if plan.Units != now.Units {
		return false
	}
	diff := now.Value - plan.Value
	if diff < 0 {
		diff = -diff
	}
	return float64(diff) <= max(1, tol*float64(plan.Value))
}

func amount(e *Estimate) string {
	if e == nil {
		return "nothing counted"
	}
	return fmt.Sprintf("%d %s", e.Value, e.Units)
}
