package nomadrun

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/santhosh-tekuri/jsonschema/v5"

	"github.com/outpost-migrate/outpost/jobs/nomadrun/nomadtest"
	"github.com/outpost-migrate/outpost/jobs/nomadspecs"
	"github.com/outpost-migrate/outpost/report"
)

// Reports as the tool prints them. The odd spacing, escapes and non-ASCII
// text check that the runner relays the line byte for byte.
const (
	reportApplied = `{"api_version":"outpost.migrate/v1","kind":"ApplyReport","command":"apply","outcome":"applied","exit_code":0,"rc":0,"changed":true,"failed":false,"msg":"applied 3 migrations – «ok» \u00e9","run_id":"r-0123456789abcdef","started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:01.5Z","duration_ms":1500,"tool":{"name":"outpost","version":"1.2.3"},"error":null}`
	reportDrift   = `{"api_version":"outpost.migrate/v1","kind":"VerifyReport","command":"verify","outcome":"drift","exit_code":3,"rc":3,"changed":false,"failed":true,"msg":"2 records differ","run_id":"r-1111111111111111","started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:00:02Z","duration_ms":2000,"tool":{"name":"outpost","version":"1.2.3"},"error":{"code":"DRIFT","message":"2 records differ","retryable":false}}`
	reportLocked  = `{"api_version":"outpost.migrate/v1","kind":"ApplyReport","command":"apply","outcome":"locked","exit_code":75,"rc":75,"changed":false,"failed":true,"msg":"lock held by r-9 on host-b","run_id":"r-2222222222222222","started_at":"2026-01-01T00:00:00Z","finished_at":"2026-01-01T00:10:00Z","duration_ms":600000,"tool":{"name":"outpost","version":"1.2.3"},"error":{"code":"LOCK_HELD","message":"lock held by r-9 on host-b","retryable":true}}`
)

type outcome struct {
	res    *Result
	err    error
	stdout string
	stderr string
}

func run(t *testing.T, ctx context.Context, o Options) outcome {
	t.Helper()
	var stdout, stderr bytes.Buffer
	o.Stdout, o.Stderr = &stdout, &stderr
	if o.Timeout == 0 {
		o.Timeout = 20 * time.Second // a hung test fails instead of hanging
	}
	res, err := Run(ctx, o)
	if res == nil {
		t.Fatal("Run returned a nil Result")
	}
	// Exactly one line on stdout, and it is the Result's report.
	if got, want := stdout.String(), string(res.Report)+"\n"; got != want {
		t.Fatalf("stdout %q, want the report line %q", got, want)
	}
	return outcome{res: res, err: err, stdout: stdout.String(), stderr: stderr.String()}
}

func opts(f *nomadtest.Server) Options { return Options{Addr: f.URL(), WaitTime: 2 * time.Second} }

var (
	schemaOnce sync.Once
	schema     *jsonschema.Schema
	schemaErr  error
)

// jobRunSchema compiles schemas/jobrun.json, offline.
func jobRunSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	schemaOnce.Do(func() {
		b, err := os.ReadFile(filepath.Join("..", "..", "schemas", "jobrun.json"))
		if err != nil {
			schemaErr = err
			return
		}
		const id = "https://schemas.outpost-migrate.dev/migrate/v1/jobrun.json"
		c := jsonschema.NewCompiler()
		c.Draft = jsonschema.Draft2020
		c.AssertFormat = true
		c.LoadURL = func(u string) (io.ReadCloser, error) { return nil, errors.New("no network: " + u) }
		if err := c.AddResource(id, bytes.NewReader(b)); err != nil {
			schemaErr = err
			return
		}
		schema, schemaErr = c.Compile(id)
	})
	if schemaErr != nil {
		t.Fatal(schemaErr)
	}
	return schema
}

type ownDoc struct {
	Kind     string `json:"kind"`
	Command  string `json:"command"`
	Outcome  string `json:"outcome"`
	ExitCode int    `json:"exit_code"`
	RC       int    `json:"rc"`
	Failed   bool   `json:"failed"`
	Changed  bool   `json:"changed"`
	Msg      string `json:"msg"`
	Extra    struct {
		Nomad NomadFacts `json:"nomad"`
	} `json:"extra"`
	Error struct {
		Code      string         `json:"code"`
		Message   string         `json:"message"`
		Retryable bool           `json:"retryable"`
		Details   map[string]any `json:"details"`
	} `json:"error"`
}

// checkOwn asserts that the run printed a valid JobRunReport with the given
// code, reason and exit code, and returns it.
func checkOwn(t *testing.T, o outcome, code report.Code, reason string, exit int) ownDoc {
	t.Helper()
	var e *Error
	if !errors.As(o.err, &e) {
		t.Fatalf("want an *Error, got %v (stdout %s)", o.err, o.stdout)
	}
	if o.res.Relayed {
		t.Fatal("Relayed is true for the runner's own report")
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(o.res.Report))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	if err := jobRunSchema(t).Validate(v); err != nil {
		t.Fatalf("own report fails schemas/jobrun.json: %v\n%s", err, o.res.Report)
	}
	var d ownDoc
	if err := json.Unmarshal(o.res.Report, &d); err != nil {
		t.Fatal(err)
	}
	if d.Kind != report.KindJobRun || d.Command != Command || d.Error.Code != string(code) || d.Error.Details["reason"] != reason ||
		d.ExitCode != exit || d.RC != exit || o.res.ExitCode != exit || e.ExitCode != exit || !d.Failed || d.Changed {
		t.Fatalf("want %s/%s exit %d, got exit %d (result %d):\n%s\nstderr:\n%s", code, reason, exit, d.ExitCode, o.res.ExitCode, o.res.Report, o.stderr)
	}
	if d.Error.Retryable != e.Retryable() {
		t.Fatal("retryable differs between report and error")
	}
	return d
}

func TestRelaysTheTaskReportAndExitCode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   int
		report string
	}{
		{"applied", 0, reportApplied},
		{"drift", 3, reportDrift},
		{"lock held", 75, reportLocked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout := "some line the tool should not print\n\n" + tc.report + "\n\n"
			f := nomadtest.New(t, nomadtest.Exit(tc.code, stdout))
			o := run(t, context.Background(), opts(f))
			if o.err != nil {
				t.Fatalf("err %v\n%s", o.err, o.stderr)
			}
			if o.res.ExitCode != tc.code || !o.res.Relayed {
				t.Fatalf("exit %d relayed %v, want %d", o.res.ExitCode, o.res.Relayed, tc.code)
			}
			if o.stdout != tc.report+"\n" {
				t.Fatalf("relayed %q\nwant    %q", o.stdout, tc.report+"\n")
			}
			n := o.res.Nomad
			if n.JobID != "outpost-migrate" || n.Task != "migrate" || n.TaskExitCode == nil || *n.TaskExitCode != tc.code || n.AllocID == "" {
				t.Fatalf("facts %+v", n)
			}
			if !strings.Contains(o.stderr, "registered job outpost-migrate") || !strings.Contains(o.stderr, "exited with code") {
				t.Fatalf("stderr:\n%s", o.stderr)
			}
			if !f.SawBlockingQuery() {
				t.Fatalf("no blocking query on the job:\n%s", f.RequestLog())
			}
			// The registered job is the embedded spec plus this run's id.
			reg := f.Registered()[0]
			if reg.Meta[RunIDMeta] == "" || reg.Meta["outpost_recipe"] != "migrate-apply" || *reg.TaskGroups[0].RestartPolicy.Attempts != 0 {
				t.Fatalf("registered %+v", reg.Meta)
			}
		})
	}
}

func TestRelaysTaskStderrWhenAsked(t *testing.T) {
	f := nomadtest.New(t, nomadtest.Exit(0, reportApplied+"\n"))
	o := opts(f)
	o.RelayTaskStderr = true
	out := run(t, context.Background(), o)
	if out.err != nil || !strings.Contains(out.stderr, `msg="starting migration"`) {
		t.Fatalf("%v\n%s", out.err, out.stderr)
	}
}

func TestDispatchesTheParameterizedJob(t *testing.T) {
	f := nomadtest.New(t, nomadtest.Exit(3, reportDrift+"\n"))
	o := opts(f)
	o.Job = nomadspecs.MigrateParam
	o.Meta = map[string]string{"command": "verify"}
	out := run(t, context.Background(), o)
	if out.err != nil || out.res.ExitCode != 3 || out.stdout != reportDrift+"\n" {
		t.Fatalf("%v exit %d\n%s\n%s", out.err, out.res.ExitCode, out.stdout, out.stderr)
	}
	if len(f.Dispatches()) != 1 || f.Dispatches()[0].Meta["command"] != "verify" || f.Dispatches()[0].JobID != "outpost-migrate-param" {
		t.Fatalf("dispatches %+v", f.Dispatches())
	}
	n := out.res.Nomad
	if !strings.HasPrefix(n.DispatchedJobID, "outpost-migrate-param/dispatch-") || n.JobID != "outpost-migrate-param" {
		t.Fatalf("facts %+v", n)
	}
	// The parent is registered as shipped (no run id: dispatches are unique).
	if len(f.Registered()) != 1 || f.Registered()[0].Meta[RunIDMeta] != "" || !f.Registered()[0].IsParameterized() {
		t.Fatalf("registered %+v", f.Registered())
	}
	if !strings.Contains(f.RequestLog(), "/v1/job/outpost-migrate-param%2Fdispatch-") {
		t.Fatalf("the dispatched job's ID must be path-escaped:\n%s", f.RequestLog())
	}
}

func TestDriverFailureIsReported(t *testing.T) {
	f := nomadtest.New(t, nomadtest.DriverFailure)
	out := run(t, context.Background(), opts(f))
	d := checkOwn(t, out, report.CodeUnknown, ReasonTaskNotRun, 1)
	if !strings.Contains(d.Msg, "Failed to pull") || d.Extra.Nomad.ClientStatus != "failed" || d.Extra.Nomad.TaskExitCode != nil {
		t.Fatalf("%s", out.res.Report)
	}
}

func TestLostAllocationIsRetryable(t *testing.T) {
	f := nomadtest.New(t, nomadtest.LostAlloc)
	out := run(t, context.Background(), opts(f))
	d := checkOwn(t, out, report.CodeTemporary, ReasonAllocLost, 75)
	if !d.Error.Retryable || d.Extra.Nomad.ClientStatus != "lost" || !strings.Contains(d.Msg, "was lost") ||
		!strings.Contains(d.Msg, "client-1") || d.Error.Details["alloc_id"] != d.Extra.Nomad.AllocID {
		t.Fatalf("%s", out.res.Report)
	}
}

func TestTimeoutLeavesTheJobRunning(t *testing.T) {
	f := nomadtest.New(t, nomadtest.Forever)
	o := opts(f)
	o.Timeout = 300 * time.Millisecond
	start := time.Now()
	out := run(t, context.Background(), o)
	if time.Since(start) > 5*time.Second {
		t.Fatal("the timeout did not cut the blocking query short")
	}
	d := checkOwn(t, out, report.CodeTimeout, ReasonTimeout, 75)
	if !d.Error.Retryable || !strings.Contains(d.Msg, "outpost-migrate") || !strings.Contains(d.Msg, "left running") ||
		d.Outcome != "timed_out" || d.Extra.Nomad.JobStatus != "running" {
		t.Fatalf("%s", out.res.Report)
	}
	if strings.Contains(f.RequestLog(), "DELETE") {
		t.Fatal("the runner must not stop the job on timeout")
	}
}

func TestTimeoutBeforePlacementSaysSo(t *testing.T) {
	f := nomadtest.New(t, func(*nomadtest.Server, *api.Job) {}) // never placed
	o := opts(f)
	o.Timeout = 200 * time.Millisecond
	d := checkOwn(t, run(t, context.Background(), o), report.CodeTimeout, ReasonTimeout, 75)
	if !strings.Contains(d.Msg, "no allocation was placed") {
		t.Fatal(d.Msg)
	}
}

type signalCause int

func (s signalCause) Error() string { return "signal" }
func (s signalCause) ExitCode() int { return int(s) }

func TestInterruptedBySignal(t *testing.T) {
	f := nomadtest.New(t, nomadtest.Forever)
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(150*time.Millisecond, func() { cancel(signalCause(143)) })
	d := checkOwn(t, run(t, ctx, opts(f)), report.CodeTerminated, ReasonInterrupted, 143)
	if d.Outcome != "interrupted" || !strings.Contains(d.Msg, "left running") {
		t.Fatal(d.Msg)
	}
	ctx, cancel = context.WithCancelCause(context.Background())
	time.AfterFunc(150*time.Millisecond, func() { cancel(nil) })
	checkOwn(t, run(t, ctx, opts(nomadtest.New(t, nomadtest.Forever))), report.CodeInterrupted, ReasonInterrupted, 130)
}

func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestNomadUnreachable(t *testing.T) {
	d := checkOwn(t, run(t, context.Background(), Options{Addr: closedAddr(t)}), report.CodeUnreachable, ReasonUnreachable, 69)
	if !d.Error.Retryable || d.Outcome != "unreachable" {
		t.Fatalf("%+v", d)
	}
}

func TestCredentialsInAddrAreNotPrinted(t *testing.T) {
	addr := strings.Replace(closedAddr(t), "http://", "http://user:hunter2@", 1)
	out := run(t, context.Background(), Options{Addr: addr})
	if strings.Contains(out.stdout+out.stderr, "hunter2") {
		t.Fatalf("secret printed:\n%s\n%s", out.stdout, out.stderr)
	}
}

func TestACLDenied(t *testing.T) {
	f := nomadtest.New(t, nomadtest.Exit(0, reportApplied+"\n"))
	f.RequireToken("the-right-token")
	o := opts(f)
	o.Token = "a-wrong-token"
	d := checkOwn(t, run(t, context.Background(), o), report.CodePermission, ReasonACLDenied, 77)
	if d.Error.Retryable || d.Outcome != "permission_denied" || !strings.Contains(d.Msg, "Permission denied") {
		t.Fatalf("%+v", d)
	}
}

func TestHonoursNomadEnvironment(t *testing.T) {
	f := nomadtest.New(t, nomadtest.Exit(0, reportApplied+"\n"))
	f.RequireToken("env-token")
	t.Setenv("NOMAD_ADDR", f.URL())
	t.Setenv("NOMAD_TOKEN", "env-token")
	t.Setenv("NOMAD_NAMESPACE", "migrations")
	t.Setenv("NOMAD_REGION", "eu")
	out := run(t, context.Background(), Options{WaitTime: time.Second})
	if out.err != nil || out.res.ExitCode != 0 {
		t.Fatalf("%v\n%s", out.err, out.stderr)
	}
	for _, r := range strings.Split(f.RequestLog(), "\n") {
		if !strings.Contains(r, "namespace=migrations") || !strings.Contains(r, "region=eu") {
			t.Fatalf("request without namespace/region: %s", r)
		}
	}
	if out.res.Nomad.Namespace != "migrations" || out.res.Nomad.Region != "eu" {
		t.Fatalf("%+v", out.res.Nomad)
	}
	// Options win over the environment.
	f2 := nomadtest.New(t, nomadtest.Exit(0, reportApplied+"\n"))
	out = run(t, context.Background(), Options{Addr: f2.URL(), Namespace: "other", WaitTime: time.Second})
	if out.err != nil || !strings.Contains(f2.RequestLog(), "namespace=other") {
		t.Fatalf("%v\n%s", out.err, f2.RequestLog())
	}
}

func TestTransientNomadErrorsAreRetried(t *testing.T) {
	f := nomadtest.New(t, nomadtest.Exit(0, reportApplied+"\n"))
	f.FailJobReads(2)
	out := run(t, context.Background(), opts(f))
	if out.err != nil || out.res.ExitCode != 0 || !strings.Contains(out.stderr, "retrying") {
		t.Fatalf("%v\n%s", out.err, out.stderr)
	}
}

func TestRerunPicksThisRunsAllocation(t *testing.T) {
	var n int
	var mu sync.Mutex
	f := nomadtest.New(t, func(f *nomadtest.Server, j *api.Job) {
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		if first {
			nomadtest.Exit(3, reportDrift+"\n")(f, j)
		} else {
			nomadtest.Exit(0, reportApplied+"\n")(f, j)
		}
	})
	first := run(t, context.Background(), opts(f))
	second := run(t, context.Background(), opts(f))
	if first.res.ExitCode != 3 || second.res.ExitCode != 0 || second.stdout != reportApplied+"\n" {
		t.Fatalf("first %d second %d %s", first.res.ExitCode, second.res.ExitCode, second.stdout)
	}
	if first.res.Nomad.AllocID == second.res.Nomad.AllocID {
		t.Fatal("the second run relayed the first run's allocation")
	}
	if f.Registered()[0].Meta[RunIDMeta] == f.Registered()[1].Meta[RunIDMeta] {
		t.Fatal("each registration must carry its own run id")
	}
}

func writeSpec(t *testing.T, doc string) string {
	p := filepath.Join(t.TempDir(), "job.json")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInvalidSpecIsConfigError(t *testing.T) {
	f := nomadtest.New(t, nomadtest.Exit(0, reportApplied+"\n"))
	apply, _ := nomadspecs.JSON(nomadspecs.MigrateApply)
	for name, doc := range map[string]string{
		"unknown field":    strings.Replace(string(apply), `"Driver"`, `"Drivr"`, 1),
		"restart attempts": strings.Replace(string(apply), `"Attempts": 0,`+"\n          \"Mode\"", `"Attempts": 3,`+"\n          \"Mode\"", 1),
		"not JSON":         "job \"x\" {}",
		"service":          strings.Replace(string(apply), `"Type": "batch"`, `"Type": "service"`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if doc == string(apply) {
				t.Fatal("mutation did not apply")
			}
			o := opts(f)
			o.JobFile = writeSpec(t, doc)
			checkOwn(t, run(t, context.Background(), o), report.CodeConfig, ReasonSpecInvalid, 78)
		})
	}
	o := opts(f)
	o.Job = "no-such-recipe"
	checkOwn(t, run(t, context.Background(), o), report.CodeConfig, ReasonSpecInvalid, 78)
	o = opts(f)
	o.JobFile = filepath.Join(t.TempDir(), "missing.json")
	checkOwn(t, run(t, context.Background(), o), report.CodeConfig, ReasonSpecInvalid, 78)
	if f.RequestLog() != "" {
		t.Fatalf("an invalid spec must not reach Nomad:\n%s", f.RequestLog())
	}
}

func TestUserJobFileRuns(t *testing.T) {
	f := nomadtest.New(t, nomadtest.Exit(0, reportApplied+"\n"))
	apply, _ := nomadspecs.JSON(nomadspecs.MigrateApply)
	o := opts(f)
	o.JobFile = writeSpec(t, strings.Replace(string(apply), `"outpost-migrate"`, `"my-migrate"`, 2))
	out := run(t, context.Background(), o)
	if out.err != nil || out.res.Nomad.JobID != "my-migrate" {
		t.Fatalf("%v %+v", out.err, out.res.Nomad)
	}
}

func TestBadMetaIsUsageError(t *testing.T) {
	f := nomadtest.New(t, nomadtest.Exit(0, reportApplied+"\n"))
	for _, meta := range []map[string]string{nil, {"command": "drop-everything"}, {"command": "plan", "x": "y"}} {
		o := opts(f)
		o.Job = nomadspecs.MigrateParam
		o.Meta = meta
		checkOwn(t, run(t, context.Background(), o), report.CodeUsage, ReasonUsage, 64)
	}
	o := opts(f)
	o.Meta = map[string]string{"command": "plan"} // migrate-apply takes no meta
	checkOwn(t, run(t, context.Background(), o), report.CodeUsage, ReasonUsage, 64)
	if f.RequestLog() != "" {
		t.Fatal("bad meta must not reach Nomad")
	}
}

func TestNoReport(t *testing.T) {
	d := checkOwn(t, run(t, context.Background(), opts(nomadtest.New(t, nomadtest.Exit(137, "")))), report.CodeUnknown, ReasonNoReport, 1)
	if !strings.Contains(d.Msg, "137") || *d.Extra.Nomad.TaskExitCode != 137 {
		t.Fatal(d.Msg)
	}
	checkOwn(t, run(t, context.Background(), opts(nomadtest.New(t, nomadtest.Exit(0, "\n\n")))), report.CodeInternal, ReasonNoReport, 70)
}

func TestInvalidReport(t *testing.T) {
	checkOwn(t, run(t, context.Background(), opts(nomadtest.New(t, nomadtest.Exit(0, "panic: oh no\n")))), report.CodeInternal, ReasonReportInvalid, 70)
	checkOwn(t, run(t, context.Background(), opts(nomadtest.New(t, nomadtest.Exit(0, `{"exit_code":0}`+"\n")))), report.CodeInternal, ReasonReportInvalid, 70)

	o := opts(nomadtest.New(t, nomadtest.Exit(0, reportApplied+"\n")))
	var seen []byte
	o.Validate = func(line []byte) error {
		seen = line
		return errors.New("kind ApplyReport: missing properties: 'targets'")
	}
	d := checkOwn(t, run(t, context.Background(), o), report.CodeInternal, ReasonReportInvalid, 70)
	if string(seen) != reportApplied || !strings.Contains(d.Msg, "missing properties") {
		t.Fatalf("validator saw %q; msg %s", seen, d.Msg)
	}
}

func TestLastLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "",
		"\n\n":               "",
		"a":                  "a",
		"a\n":                "a",
		"a\nb\n":             "b",
		"a\nb\n\n  \n":       "b",
		"a\r\n":              "a",
		"  {\"x\": 1}  \n\n": "  {\"x\": 1}  ",
	} {
		if got := string(LastLine([]byte(in))); got != want {
			t.Errorf("LastLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResolveJob(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "custom")
	_ = os.WriteFile(file, []byte("{}"), 0o600)
	for in, want := range map[string][2]string{
		"":                 {"migrate-apply", ""},
		"migrate-param":    {"migrate-param", ""},
		"job.json":         {"", "job.json"},
		"./x/job":          {"", "./x/job"},
		file:               {"", file},
		"nonexistent-name": {"nonexistent-name", ""},
	} {
		n, f := ResolveJob(in)
		if n != want[0] || f != want[1] {
			t.Errorf("ResolveJob(%q) = %q, %q", in, n, f)
		}
	}
}

func TestHonoursNomadTLSVariables(t *testing.T) {
	f := nomadtest.NewTLS(t, nomadtest.Exit(0, reportApplied+"\n"))
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOMAD_ADDR", f.URL())

	// Without the CA the server is not trusted: a configuration error.
	d := checkOwn(t, run(t, context.Background(), Options{}), report.CodeConfig, ReasonNomadConfig, 78)
	if !strings.Contains(d.Msg, "NOMAD_CACERT") {
		t.Fatal(d.Msg)
	}
	// NOMAD_CACERT and NOMAD_TLS_SERVER_NAME are honoured.
	t.Setenv("NOMAD_CACERT", ca)
	t.Setenv("NOMAD_TLS_SERVER_NAME", "example.com") // in httptest's certificate
	out := run(t, context.Background(), Options{WaitTime: time.Second})
	if out.err != nil || out.res.ExitCode != 0 || out.stdout != reportApplied+"\n" {
		t.Fatalf("%v\n%s", out.err, out.stderr)
	}
	// A name the certificate does not carry fails verification.
	t.Setenv("NOMAD_TLS_SERVER_NAME", "nomad.invalid")
	checkOwn(t, run(t, context.Background(), Options{}), report.CodeConfig, ReasonNomadConfig, 78)
	// NOMAD_SKIP_VERIFY turns verification off.
	t.Setenv("NOMAD_CACERT", "")
	t.Setenv("NOMAD_SKIP_VERIFY", "true")
	if out := run(t, context.Background(), Options{WaitTime: time.Second}); out.err != nil {
		t.Fatalf("%v\n%s", out.err, out.stderr)
	}
}

func TestImageOverride(t *testing.T) {
	f := nomadtest.New(t, nomadtest.Exit(0, reportApplied+"\n"))
	o := opts(f)
	o.Image = "hookdeck/outpost:v0.17.0"
	if out := run(t, context.Background(), o); out.err != nil {
		t.Fatal(out.err)
	}
	if got := f.Registered()[0].TaskGroups[0].Tasks[0].Config["image"]; got != "hookdeck/outpost:v0.17.0" {
		t.Fatalf("registered image %v", got)
	}
}
