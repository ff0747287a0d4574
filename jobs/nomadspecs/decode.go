package nomadspecs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Commands a migration job may run (the second element of the task's args).
var Commands = []string{"plan", "apply", "verify", "status", "unlock", "cleanup", "list"}

// DispatchCommands are the values the parameterized job accepts in its
// "command" meta.
var DispatchCommands = []string{"plan", "apply", "verify", "status", "unlock"}

// needsYes lists the commands that refuse to act without --yes when there is
// no terminal to ask on, as in a Nomad task.
var needsYes = []string{"apply", "unlock", "cleanup"}

// MetaCommand is the args element of the parameterized job that Nomad
// replaces with the dispatch meta "command".
const MetaCommand = "${NOMAD_META_command}"

// MinKillTimeout is the shortest kill_timeout that leaves the tool time to
// reach a safe point, save its checkpoint and release the lock on SIGTERM.
const MinKillTimeout = 30 * time.Second

// Decode reads a JSON job specification strictly into an api.Job: unknown
// fields and trailing data are errors. It accepts the {"Job": {...}} document
// that `nomad job run -output` prints (the shape shipped here) and a bare
// api.Job object.
func Decode(b []byte) (*api.Job, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, fmt.Errorf("job specification is not a JSON object: %w", err)
	}
	var job *api.Job
	if _, wrapped := top["Job"]; wrapped {
		var doc struct{ Job *api.Job }
		if err := strictUnmarshal(b, &doc); err != nil {
			return nil, err
		}
		job = doc.Job
	} else {
		job = new(api.Job)
		if err := strictUnmarshal(b, job); err != nil {
			return nil, err
		}
	}
	if job == nil {
		return nil, errors.New("job specification has a null Job")
	}
	return job, nil
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("job specification does not decode into api.Job: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("job specification has data after the JSON document")
	}
	return nil
}

// Args returns a task's driver args as strings (Config["args"]).
func Args(t *api.Task) ([]string, error) {
	raw, ok := t.Config["args"]
	if !ok {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("task %q: config.args is %T, not a list", t.Name, raw)
	}
	out := make([]string, 0, len(list))
	for i, v := range list {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("task %q: config.args[%d] is %T, not a string", t.Name, i, v)
		}
		out = append(out, s)
	}
	return out, nil
}

// IsMigrationTask reports whether t runs `outpost migrate ...` (the image's
// entrypoint is outpost, so its args start with "migrate").
func IsMigrationTask(t *api.Task) bool {
	args, err := Args(t)
	return err == nil && len(args) > 0 && args[0] == "migrate"
}

// MigrationTask finds the one task of job that runs `outpost migrate`, or
// the task called name when name is not empty.
func MigrationTask(job *api.Job, name string) (*api.TaskGroup, *api.Task, error) {
	var (
		found []*api.Task
		group []*api.TaskGroup
	)
	for _, g := range job.TaskGroups {
		for _, t := range g.Tasks {
			if (name != "" && t.Name == name) || (name == "" && IsMigrationTask(t)) {
				found = append(found, t)
				group = append(group, g)
			}
		}
	}
	switch {
	case len(found) == 1:
		return group[0], found[0], nil
	case name != "" && len(found) == 0:
		return nil, nil, fmt.Errorf("job %q has no task called %q", str(job.ID), name)
	case name != "":
		return nil, nil, fmt.Errorf("job %q has %d tasks called %q; name the group's task uniquely", str(job.ID), len(found), name)
	case len(found) == 0:
		return nil, nil, fmt.Errorf("job %q has no task whose args start with \"migrate\"", str(job.ID))
	default:
		return nil, nil, fmt.Errorf("job %q has %d migration tasks; choose one with --task", str(job.ID), len(found))
	}
}

// CheckBatch checks the rules for a batch job that runs one migration
// command and that `outpost jobs nomad run` waits for:
//   - an ID, type "batch", one group with count 1 (or unset) and one task
//     running `migrate COMMAND`, COMMAND known or "${NOMAD_META_command}";
//   - apply, unlock and cleanup carry --yes (a task has no terminal);
//   - restart attempts 0 (on the task or its group) and reschedule attempts 0
//     with unlimited off (on the group or the job), because Nomad counts
//     every non-zero exit as a failure and would otherwise rerun a migration
//     that failed for a reason a rerun does not fix;
//   - a parameterized job requires the "command" meta.
//
// Softer advice (kill_signal SIGTERM, kill_timeout at least MinKillTimeout)
// comes back as warnings.
func CheckBatch(job *api.Job) (warnings []string, err error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if str(job.ID) == "" {
		fail("job has no ID")
	}
	if str(job.Type) != "batch" {
		fail("job %q has type %q, want \"batch\"", str(job.ID), str(job.Type))
	}
	if len(job.TaskGroups) != 1 {
		fail("job %q has %d groups, want 1", str(job.ID), len(job.TaskGroups))
		return warnings, errors.Join(errs...)
	}
	g := job.TaskGroups[0]
	if g.Count != nil && *g.Count != 1 {
		fail("group %q has count %d, want 1", str(g.Name), *g.Count)
	}
	if len(g.Tasks) != 1 {
		fail("group %q has %d tasks, want 1", str(g.Name), len(g.Tasks))
		return warnings, errors.Join(errs...)
	}
	t := g.Tasks[0]

	args, aerr := Args(t)
	switch {
	case aerr != nil:
		errs = append(errs, aerr)
	case len(args) < 2 || args[0] != "migrate":
		fail("task %q: args %q do not run `migrate COMMAND`", t.Name, args)
	case args[1] == MetaCommand:
		if !job.IsParameterized() {
			fail("task %q uses %s but the job is not parameterized", t.Name, MetaCommand)
		} else if !slices.Contains(job.ParameterizedJob.MetaRequired, "command") {
			fail("parameterized job %q must require the \"command\" meta", str(job.ID))
		}
		if !slices.Contains(args, "--yes") {
			fail("task %q: a dispatched apply or unlock needs --yes in args", t.Name)
		}
	case !slices.Contains(Commands, args[1]):
		fail("task %q: unknown migrate command %q", t.Name, args[1])
	case slices.Contains(needsYes, args[1]) && !slices.Contains(args, "--yes"):
		fail("task %q: `migrate %s` needs --yes in a job (no terminal to confirm on)", t.Name, args[1])
	}

	restart := g.RestartPolicy
	if t.RestartPolicy != nil && t.RestartPolicy.Attempts != nil {
		restart = t.RestartPolicy
	}
	if restart == nil || restart.Attempts == nil || *restart.Attempts != 0 {
		fail("task %q: restart attempts must be set to 0 (Nomad's batch default is 3)", t.Name)
	}
	resched := g.ReschedulePolicy
	if resched == nil {
		resched = job.Reschedule
	}
	if resched == nil || resched.Attempts == nil || *resched.Attempts != 0 {
		fail("group %q: reschedule attempts must be set to 0 (Nomad's batch default is 1)", str(g.Name))
	} else if resched.Unlimited != nil && *resched.Unlimited {
		fail("group %q: reschedule unlimited must be false", str(g.Name))
	}

	if t.KillSignal != "" && t.KillSignal != "SIGTERM" {
		warnings = append(warnings, fmt.Sprintf("task %q: kill_signal %s; the tool stops at a safe point on SIGTERM or SIGINT", t.Name, t.KillSignal))
	}
	if t.KillTimeout == nil || *t.KillTimeout < MinKillTimeout {
		warnings = append(warnings, fmt.Sprintf("task %q: kill_timeout below %s may kill the tool before it releases the lock", t.Name, MinKillTimeout))
	}
	return warnings, errors.Join(errs...)
}

// CheckDispatchMeta checks meta against a parameterized job's declared keys
// and, for "command", against DispatchCommands.
func CheckDispatchMeta(job *api.Job, meta map[string]string) error {
	if !job.IsParameterized() {
		if len(meta) > 0 {
			return fmt.Errorf("job %q is not parameterized; --meta applies only to a parameterized job", str(job.ID))
		}
		return nil
	}
	p := job.ParameterizedJob
	var missing []string
	for _, k := range p.MetaRequired {
		if _, ok := meta[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("job %q needs --meta %s", str(job.ID), strings.Join(missing, "=..., --meta ")+"=...")
	}
	for k := range meta {
		if !slices.Contains(p.MetaRequired, k) && !slices.Contains(p.MetaOptional, k) {
			return fmt.Errorf("job %q takes no meta %q (allowed: %s)", str(job.ID), k, strings.Join(append(slices.Clone(p.MetaRequired), p.MetaOptional...), ", "))
		}
	}
	if c, ok := meta["command"]; ok && !slices.Contains(DispatchCommands, c) {
		return fmt.Errorf("meta command=%q is not one of %s", c, strings.Join(DispatchCommands, ", "))
	}
	return nil
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
