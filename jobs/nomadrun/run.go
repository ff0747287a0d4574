// Package nomadrun runs an outpost migration as a Nomad batch job and relays
// its result: it registers (or, for a parameterized job, dispatches) a JSON
// job specification through github.com/hashicorp/nomad/api, waits with
// blocking queries until the job is dead, reads the task's exit code from its
// last Terminated event, fetches the report from the allocation's stdout,
// validates it, prints it unchanged and returns the task's exit code.
//
// When it cannot do that (Nomad unreachable, ACL denied, invalid spec, lost
// or failed allocation, no or invalid report, timeout) it prints its own
// report instead, kind JobRunReport (schemas/jobrun.json), with an exit code
// from the tool's table. See jobs/README.md for the table.
package nomadrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/outpost-migrate/outpost/batch/poll"
	"github.com/outpost-migrate/outpost/jobs/nomadspecs"
	"github.com/outpost-migrate/outpost/report"
)

// Options say what to run and where. Empty connection fields fall back to
// api.DefaultConfig(), which reads NOMAD_ADDR, NOMAD_TOKEN, NOMAD_NAMESPACE,
// NOMAD_REGION, NOMAD_HTTP_AUTH and the TLS variables NOMAD_CACERT,
// NOMAD_CAPATH, NOMAD_CLIENT_CERT, NOMAD_CLIENT_KEY, NOMAD_TLS_SERVER_NAME and
// NOMAD_SKIP_VERIFY.
type Options struct {
	Addr      string // Nomad HTTP address; default NOMAD_ADDR or http://127.0.0.1:4646
	Token     string // ACL token; default NOMAD_TOKEN
	Namespace string // default NOMAD_NAMESPACE
	Region    string // default NOMAD_REGION

	// Job names an embedded recipe (nomadspecs.Names(): "migrate-apply",
	// "migrate-param"); JobFile, when set, is a JSON job specification to use
	// instead. With neither, "migrate-apply".
	Job     string
	JobFile string
	// Task is the task whose exit code and stdout count; default the job's
	// one task whose args start with "migrate".
	Task string
	// Meta is the dispatch meta of a parameterized job ("command": "plan").
	Meta map[string]string
	// Image, when set, replaces the migration task's image (pin the tag of
	// the Outpost release you migrate to: hookdeck/outpost:v0.17.0).
	Image string

	// Timeout bounds the whole run; 0 waits as long as the job runs. When it
	// passes, the job is left running and the exit code is 75.
	Timeout time.Duration
	// WaitTime bounds one blocking query (default 5m; Nomad caps it at 10m).
	WaitTime time.Duration
	// RelayTaskStderr copies the task's stderr log (the tool's logs) to
	// Stderr once the task is dead.
	RelayTaskStderr bool

	Stdout io.Writer // the report goes here; default os.Stdout
	Stderr io.Writer // progress goes here; default os.Stderr

	// Validate checks the task's report (one JSON line) before it is relayed;
	// the command passes report.ValidateJSON. Nil accepts any JSON object
	// that carries api_version and exit_code.
	Validate func(line []byte) error

	// ToolVersion goes into the runner's own reports.
	ToolVersion string
}

// Result is what happened. ExitCode is the process exit code to use: the
// task's when its report was relayed, else the runner's own.
type Result struct {
	ExitCode int
	// Report is the printed line (without its newline): the task's report
	// byte for byte when Relayed, else the runner's JobRunReport.
	Report  []byte
	Relayed bool
	Nomad   NomadFacts
}

// RunIDMeta is the job meta key the runner sets to the run's id on every
// registration, so that registering an unchanged batch job that already ran
// makes a new job version and Nomad places a new allocation.
const RunIDMeta = "outpost_run_id"

const defaultWaitTime = 5 * time.Minute

// maxLog bounds how much of the task's stdout is read.
const maxLog = 64 << 20

// errTimeout is the cause of the context when Options.Timeout passes.
var errTimeout = errors.New("timeout")

// Run runs the job and prints one report line on Stdout. The error is nil
// when the task's report was relayed (whatever its exit code); otherwise it
// is the *Error that the printed JobRunReport describes. Result is never nil.
func Run(ctx context.Context, o Options) (*Result, error) {
	r := &runner{o: o}
	r.defaults()
	// The run id is the report's, and goes into the job's meta (RunIDMeta).
	r.rep = report.New(report.KindJobRun, Command, report.Tool{Name: "outpost", Version: r.o.ToolVersion})
	res := &Result{}
	line, exit, relayed, err := r.run(ctx)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = newError(report.CodeUnknown, ReasonNomadError, err, "%v", err)
			err = e
		}
		line = marshalOwn(r.rep, &r.facts, e)
		exit = e.ExitCode
		r.logf("%s", e.Error())
	}
	res.ExitCode, res.Report, res.Relayed, res.Nomad = exit, line, relayed, r.facts
	if _, werr := r.o.Stdout.Write(append(append([]byte(nil), line...), '\n')); werr != nil && err == nil {
		err = werr
	}
	return res, err
}

type runner struct {
	o     Options
	c     *api.Client
	rep   *report.Report // the runner's own report, printed on failure
	facts NomadFacts

	lastJobStatus string
	lastAlloc     map[string]string
}

func (r *runner) defaults() {
	if r.o.Stdout == nil {
		r.o.Stdout = os.Stdout
	}
	if r.o.Stderr == nil {
		r.o.Stderr = os.Stderr
	}
	if r.o.WaitTime <= 0 {
		r.o.WaitTime = defaultWaitTime
	}
	if r.o.ToolVersion == "" {
		r.o.ToolVersion = "dev"
	}
	if r.o.Validate == nil {
		r.o.Validate = basicValidate
	}
	r.lastAlloc = map[string]string{}
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.o.Stderr, "jobs nomad run: "+format+"\n", args...)
}

// LoadJob reads the job specification named by Options (an embedded recipe
// or a JSON file), strictly.
func LoadJob(o Options) (*api.Job, error) {
	var (
		b   []byte
		err error
		src string
	)
	switch {
	case o.JobFile != "":
		src = o.JobFile
		b, err = os.ReadFile(o.JobFile)
	default:
		name := o.Job
		if name == "" {
			name = nomadspecs.MigrateApply
		}
		src = "embedded job " + name
		b, err = nomadspecs.JSON(name)
	}
	if err != nil {
		return nil, newError(report.CodeConfig, ReasonSpecInvalid, err, "read %s", src)
	}
	job, err := nomadspecs.Decode(b)
	if err != nil {
		return nil, newError(report.CodeConfig, ReasonSpecInvalid, err, "%s", src)
	}
	return job, nil
}

// ResolveJob interprets a --job value: an existing file or a name ending in
// .json is a file, anything else an embedded recipe name.
func ResolveJob(v string) (name, file string) {
	if v == "" {
		return nomadspecs.MigrateApply, ""
	}
	if strings.HasSuffix(v, ".json") || strings.ContainsRune(v, os.PathSeparator) {
		return "", v
	}
	if st, err := os.Stat(v); err == nil && !st.IsDir() {
		return "", v
	}
	return v, ""
}

func (r *runner) client() (*api.Client, error) {
	cfg := api.DefaultConfig()
	if r.o.Addr != "" {
		cfg.Address = r.o.Addr
	}
	if r.o.Token != "" {
		cfg.SecretID = r.o.Token
	}
	if r.o.Namespace != "" {
		cfg.Namespace = r.o.Namespace
	}
	if r.o.Region != "" {
		cfg.Region = r.o.Region
	}
	r.facts.Addr = redactAddr(cfg.Address)
	r.facts.Namespace = cfg.Namespace
	r.facts.Region = cfg.Region
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, newError(report.CodeConfig, ReasonNomadConfig, err, "configure the Nomad client for %s", r.facts.Addr)
	}
	return c, nil
}

// redactAddr drops credentials from an address before it is printed.
func redactAddr(addr string) string {
	u, err := url.Parse(addr)
	if err != nil || u.User == nil {
		return addr
	}
	u.User = nil
	return u.String()
}

func (r *runner) run(ctx context.Context) (line []byte, exit int, relayed bool, err error) {
	job, err := LoadJob(r.o)
	if err != nil {
		return nil, 0, false, err
	}
	warnings, err := nomadspecs.CheckBatch(job)
	if err != nil {
		return nil, 0, false, newError(report.CodeConfig, ReasonSpecInvalid, err, "job %q breaks the rules for a migration job", deref(job.ID))
	}
	for _, w := range warnings {
		r.logf("warning: %s", w)
	}
	group, task, err := nomadspecs.MigrationTask(job, r.o.Task)
	if err != nil {
		return nil, 0, false, newError(report.CodeConfig, ReasonSpecInvalid, err, "choose the task")
	}
	r.facts.JobID, r.facts.TaskGroup, r.facts.Task = deref(job.ID), deref(group.Name), task.Name
	if r.o.Image != "" {
		if task.Config == nil {
			task.Config = map[string]any{}
		}
		task.Config["image"] = r.o.Image
	}
	if err := nomadspecs.CheckDispatchMeta(job, r.o.Meta); err != nil {
		return nil, 0, false, newError(report.CodeUsage, ReasonUsage, err, "dispatch meta")
	}
	if r.c, err = r.client(); err != nil {
		return nil, 0, false, err
	}

	if r.o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, r.o.Timeout, errTimeout)
		defer cancel()
	}

	watchID, minIndex, err := r.start(ctx, job)
	if err != nil {
		return nil, 0, false, err
	}
	alloc, err := r.wait(ctx, watchID, minIndex)
	if err != nil {
		return nil, 0, false, err
	}
	return r.collect(ctx, alloc, task.Name)
}

// start registers the job, or registers and dispatches a parameterized one,
// and returns the ID of the job to watch and the lowest CreateIndex an
// allocation of this run can have.
func (r *runner) start(ctx context.Context, job *api.Job) (string, uint64, error) {
	id := deref(job.ID)
	wq := (&api.WriteOptions{}).WithContext(ctx)
	if job.IsParameterized() {
		// Registering an unchanged parameterized job is a no-op; a changed one
		// makes a new version that the dispatch uses.
		if _, _, err := r.c.Jobs().Register(job, wq); err != nil {
			return "", 0, r.ctxErr(ctx, classify(err, "register parameterized job "+id))
		}
		resp, _, err := r.c.Jobs().Dispatch(id, r.o.Meta, nil, "", wq)
		if err != nil {
			return "", 0, r.ctxErr(ctx, classify(err, "dispatch job "+id))
		}
		r.facts.DispatchedJobID, r.facts.EvalID = resp.DispatchedJobID, resp.EvalID
		r.logf("dispatched %s as %s (meta %s, evaluation %s)", id, resp.DispatchedJobID, metaString(r.o.Meta), short(resp.EvalID))
		return resp.DispatchedJobID, 0, nil
	}
	if job.Meta == nil {
		job.Meta = map[string]string{}
	} else {
		job.Meta = maps.Clone(job.Meta)
	}
	job.Meta[RunIDMeta] = r.rep.RunID
	resp, _, err := r.c.Jobs().Register(job, wq)
	if err != nil {
		return "", 0, r.ctxErr(ctx, classify(err, "register job "+id))
	}
	if resp.Warnings != "" {
		r.logf("Nomad warns: %s", strings.TrimSpace(resp.Warnings))
	}
	r.facts.EvalID = resp.EvalID
	r.logf("registered job %s (evaluation %s)", id, short(resp.EvalID))
	return id, resp.JobModifyIndex, nil
}

// ctxErr prefers the context's story (timeout, interrupt) over the error of
// a request that the context cut short.
func (r *runner) ctxErr(ctx context.Context, e *Error) error {
	if ctx.Err() == nil {
		return e
	}
	return r.stopped(ctx)
}

// stopped is the error for a context that ended: --timeout or a signal.
func (r *runner) stopped(ctx context.Context) error {
	id := r.facts.JobID
	if r.facts.DispatchedJobID != "" {
		id = r.facts.DispatchedJobID
	}
	where := fmt.Sprintf("job %s is left running; follow it with `nomad job status %s`", id, id)
	if r.facts.JobStatus != "" {
		where = fmt.Sprintf("job %s (status %s) is left running; follow it with `nomad job status %s`", id, r.facts.JobStatus, id)
	}
	if r.facts.AllocID == "" && r.facts.JobStatus == "pending" {
		where += "; no allocation was placed yet (`nomad job status -evals " + id + "` shows why)"
	}
	cause := context.Cause(ctx)
	if errors.Is(cause, errTimeout) {
		return newError(report.CodeTimeout, ReasonTimeout, nil, "gave up waiting after %s: %s", r.o.Timeout, where)
	}
	code := report.CodeInterrupted
	var ec interface{ ExitCode() int }
	if errors.As(cause, &ec) && ec.ExitCode() == 143 {
		code = report.CodeTerminated
	}
	return newError(code, ReasonInterrupted, nil, "stopped before the job finished: %s", where)
}

// wait blocks on the job until it is dead and returns this run's allocation.
func (r *runner) wait(ctx context.Context, jobID string, minIndex uint64) (*api.Allocation, error) {
	var index uint64
	for {
		if ctx.Err() != nil {
			return nil, r.stopped(ctx)
		}
		job, qm, err := r.jobInfo(ctx, jobID, index)
		if err != nil {
			return nil, err
		}
		if qm.LastIndex < index {
			index = 0 // the index went backwards (new leader, snapshot): start over
		} else {
			index = qm.LastIndex
		}
		status := deref(job.Status)
		r.facts.JobStatus = status
		if status != r.lastJobStatus {
			r.logf("job %s is %s", jobID, status)
			r.lastJobStatus = status
		}
		allocs, err := r.allocations(ctx, jobID, minIndex)
		if err != nil {
			return nil, err
		}
		if status != "dead" {
			continue
		}
		if minIndex > 0 && job.JobModifyIndex != nil && *job.JobModifyIndex > minIndex && len(allocs) == 0 {
			return nil, newError(report.CodeUnknown, ReasonSupersededByJob, nil,
				"job %s was registered again by someone else before this run was placed", jobID)
		}
		if len(allocs) == 0 {
			if job.Stop != nil && *job.Stop {
				return nil, newError(report.CodeUnknown, ReasonJobStopped, nil,
					"job %s was stopped before an allocation of this run was placed", jobID)
			}
			return nil, newError(report.CodeUnknown, ReasonNoAllocation, nil,
				"job %s is dead without an allocation of this run (`nomad job status -evals %s` shows why)", jobID, jobID)
		}
		stub := allocs[len(allocs)-1]
		alloc, _, err := r.c.Allocations().Info(stub.ID, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil, r.stopped(ctx)
			}
			return nil, classify(err, "read allocation "+stub.ID)
		}
		return alloc, nil
	}
}

// jobInfo is one blocking query on the job. Leader elections and restarts
// are short: an unreachable Nomad is asked again up to 5 times, 0.5 s, 1 s,
// then 2 s apart.
func (r *runner) jobInfo(ctx context.Context, jobID string, index uint64) (*api.Job, *api.QueryMeta, error) {
	var job *api.Job
	var qm *api.QueryMeta
	var last *Error
	err := poll.Policy{Tries: 6, First: 500 * time.Millisecond, Max: 2 * time.Second}.Until(ctx,
		func(int) (bool, error) {
			q := (&api.QueryOptions{WaitIndex: index, WaitTime: r.o.WaitTime}).WithContext(ctx)
			var err error
			if job, qm, err = r.c.Jobs().Info(jobID, q); err == nil {
				return true, nil
			}
			if ctx.Err() != nil {
				return false, r.stopped(ctx)
			}
			last = classify(err, "watch job "+jobID)
			if last.Reason == ReasonNotFound {
				return false, newError(report.CodeUnknown, ReasonNotFound, nil, "job %s disappeared while the runner waited (stopped with -purge?)", jobID)
			}
			if last.Code != report.CodeUnreachable {
				return false, last
			}
			return false, nil
		},
		func(attempt int, _ time.Duration) { r.logf("%s; retrying (%d/5)", last.Error(), attempt) })
	var ended *poll.Ended
	switch {
	case errors.Is(err, poll.ErrExpired):
		return nil, nil, last
	case errors.As(err, &ended):
		return nil, nil, r.stopped(ctx)
	}
	return job, qm, err
}

// allocations lists this run's allocations (CreateIndex >= minIndex), oldest
// first, and logs what changed.
func (r *runner) allocations(ctx context.Context, jobID string, minIndex uint64) ([]*api.AllocationListStub, error) {
	list, _, err := r.c.Jobs().Allocations(jobID, true, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			return nil, r.stopped(ctx)
		}
		return nil, classify(err, "list allocations of job "+jobID)
	}
	var mine []*api.AllocationListStub
	for _, a := range list {
		if a.CreateIndex >= minIndex {
			mine = append(mine, a)
		}
	}
	sort.Slice(mine, func(i, j int) bool { return mine[i].CreateIndex < mine[j].CreateIndex })
	for _, a := range mine {
		state := a.ClientStatus
		if ts, ok := a.TaskStates[r.facts.Task]; ok && ts != nil {
			state += "/" + ts.State
		}
		if r.lastAlloc[a.ID] != state {
			r.lastAlloc[a.ID] = state
			r.logf("allocation %s on node %s: %s", short(a.ID), nodeName(a.NodeName, a.NodeID), state)
		}
	}
	if n := len(mine); n > 0 {
		r.facts.AllocID = mine[n-1].ID
	}
	return mine, nil
}

// collect reads the exit code and the report of a dead allocation.
func (r *runner) collect(ctx context.Context, alloc *api.Allocation, taskName string) ([]byte, int, bool, error) {
	f := &r.facts
	f.AllocID, f.NodeID, f.NodeName = alloc.ID, alloc.NodeID, alloc.NodeName
	f.ClientStatus, f.ClientDescription = alloc.ClientStatus, alloc.ClientDescription
	ts := alloc.TaskStates[taskName]
	var term *api.TaskEvent
	if ts != nil {
		f.TaskState = ts.State
		for _, ev := range ts.Events {
			if ev == nil {
				continue
			}
			if ev.Type == api.TaskTerminated {
				term = ev
			}
			msg := ev.DisplayMessage
			if msg == "" {
				msg = firstNonEmpty(ev.Message, ev.DriverError, ev.SetupError, ev.ValidationError, ev.KillError)
			}
			f.Events = append(f.Events, strings.TrimSpace(ev.Type+": "+msg))
		}
		if len(f.Events) > maxEvents {
			f.Events = f.Events[len(f.Events)-maxEvents:]
		}
	}
	if term != nil {
		code, sig, oom := exitOf(term)
		f.TaskExitCode, f.TaskSignal, f.OOMKilled = &code, sig, oom
	}

	if alloc.ClientStatus == api.AllocClientStatusLost {
		return nil, 0, false, newError(report.CodeTemporary, ReasonAllocLost, nil,
			"allocation %s of job %s was lost: node %s stopped answering (%s). The migration may still be running there and holds the lock until it ends or the lock expires; rerun later, the lock keeps runs apart",
			alloc.ID, alloc.JobID, nodeName(alloc.NodeName, alloc.NodeID), firstNonEmpty(alloc.ClientDescription, "no description"))
	}
	switch alloc.ClientStatus {
	case api.AllocClientStatusComplete, api.AllocClientStatusFailed:
	default:
		return nil, 0, false, newError(report.CodeUnknown, ReasonAllocUnsupported, nil,
			"job is dead but allocation %s is %q", alloc.ID, alloc.ClientStatus)
	}
	if term == nil {
		return nil, 0, false, newError(report.CodeUnknown, ReasonTaskNotRun, nil,
			"task %s of allocation %s did not run to an exit (allocation %s): %s",
			taskName, alloc.ID, alloc.ClientStatus, lastEvents(f.Events, 3))
	}
	code := *f.TaskExitCode
	r.logf("task %s exited with code %d", taskName, code)

	if r.o.RelayTaskStderr {
		if b, err := r.readLog(ctx, alloc, taskName, "stderr"); err == nil {
			_, _ = r.o.Stderr.Write(b)
		} else {
			r.logf("cannot read the task's stderr: %v", err)
		}
	}
	out, err := r.readLog(ctx, alloc, taskName, "stdout")
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, false, r.stopped(ctx)
		}
		var e *Error
		if !errors.As(err, &e) {
			e = classify(err, "read the stdout of task "+taskName)
		}
		e.Reason = ReasonLogsUnreadable
		e.Message = fmt.Sprintf("task %s exited with code %d but its report could not be read: %s", taskName, code, e.Message)
		return nil, 0, false, e
	}
	line := LastLine(out)
	if line == nil {
		extra := ""
		if f.OOMKilled {
			extra = " (killed for lack of memory: raise the task's memory)"
		} else if f.TaskSignal != nil && *f.TaskSignal != 0 {
			extra = fmt.Sprintf(" (signal %d)", *f.TaskSignal)
		}
		if code == 0 {
			return nil, 0, false, newError(report.CodeInternal, ReasonNoReport, nil,
				"task %s exited 0 without printing a report on stdout", taskName)
		}
		return nil, 0, false, newError(report.CodeUnknown, ReasonNoReport, nil,
			"task %s exited with code %d%s without printing a report on stdout", taskName, code, extra)
	}
	if err := r.o.Validate(line); err != nil {
		return nil, 0, false, newError(report.CodeInternal, ReasonReportInvalid, err,
			"task %s exited with code %d and printed a report that fails validation", taskName, code)
	}
	if rc, ok := reportExitCode(line); ok && rc != code {
		r.logf("warning: the report says exit code %d but the task exited with %d; using the task's", rc, code)
	}
	return line, code, true, nil
}

// exitOf reads the exit code, signal and OOM flag of a Terminated event.
func exitOf(ev *api.TaskEvent) (code int, sig *int, oom bool) {
	code = ev.ExitCode
	if v, ok := ev.Details["exit_code"]; ok {
		if n, err := strconv.Atoi(v); err == nil {
			code = n
		}
	}
	s := ev.Signal
	if v, ok := ev.Details["signal"]; ok {
		if n, err := strconv.Atoi(v); err == nil {
			s = n
		}
	}
	if s != 0 {
		sig = &s
	}
	oom = ev.Details["oom_killed"] == "true"
	return code, sig, oom
}

// readLog reads a task's whole stdout or stderr log through the Nomad API
// (following rotation across stdout.0, stdout.1, ...).
func (r *runner) readLog(ctx context.Context, alloc *api.Allocation, task, typ string) ([]byte, error) {
	cancel := make(chan struct{})
	defer close(cancel)
	q := (&api.QueryOptions{}).WithContext(ctx)
	frames, errCh := r.c.AllocFS().Logs(alloc, false, task, typ, "start", 0, cancel, q)
	var buf bytes.Buffer
	for {
		select {
		case fr, ok := <-frames:
			if !ok {
				select {
				case err := <-errCh:
					return buf.Bytes(), err
				default:
					return buf.Bytes(), nil
				}
			}
			if buf.Len()+len(fr.Data) > maxLog {
				return nil, newError(report.CodeInternal, ReasonLogsUnreadable, nil, "task %s wrote more than %d MiB to %s", task, maxLog>>20, typ)
			}
			buf.Write(fr.Data)
		case err := <-errCh:
			return buf.Bytes(), err
		case <-ctx.Done():
			return buf.Bytes(), ctx.Err()
		}
	}
}

// LastLine returns the last line of out that is not blank, without its line
// terminator and otherwise unchanged, or nil.
func LastLine(out []byte) []byte {
	for len(out) > 0 {
		out = bytes.TrimSuffix(out, []byte("\n"))
		i := bytes.LastIndexByte(out, '\n')
		line := out[i+1:]
		if len(bytes.TrimSpace(line)) > 0 {
			return bytes.TrimSuffix(line, []byte("\r"))
		}
		if i < 0 {
			break
		}
		out = out[:i+1]
	}
	return nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func nodeName(name, id string) string {
	if name != "" {
		return name
	}
	if id == "" {
		return "(none)"
	}
	return short(id)
}

func metaString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if strings.TrimSpace(s) != "" {
			return s
		}
	}
	return ""
}

func lastEvents(ev []string, n int) string {
	if len(ev) == 0 {
		return "no task events"
	}
	if len(ev) > n {
		ev = ev[len(ev)-n:]
	}
	return strings.Join(ev, "; ")
}
