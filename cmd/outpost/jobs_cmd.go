package main

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/outpost-migrate/outpost/jobs/nomadrun"
	"github.com/outpost-migrate/outpost/report"
)

// registerJobs adds the flags of `outpost jobs nomad run` and sets c.jobs
// to its action. The action runs the job, prints one report (the task's,
// relayed, or the runner's own) and gives the exit code: the migration
// task's own when its report was relayed, the runner's (see
// jobs/README.md) otherwise.
//
// ctx is cancelled on SIGINT/SIGTERM with a cause that has an
// `ExitCode() int` method returning 130 or 143: the runner then reports
// INTERRUPTED or TERMINATED with that code and leaves the Nomad job running.
//
// The ACL token is read from NOMAD_TOKEN only (never a flag, so it stays out
// of process listings and shell history); the address, namespace, region and
// TLS settings come from NOMAD_ADDR, NOMAD_NAMESPACE, NOMAD_REGION,
// NOMAD_CACERT, NOMAD_CAPATH, NOMAD_CLIENT_CERT, NOMAD_CLIENT_KEY,
// NOMAD_TLS_SERVER_NAME and NOMAD_SKIP_VERIFY unless a flag says otherwise.
func registerJobs(c *cli, run kingpinCmd) {
	var (
		jobFlag   = run.Flag("job", "Embedded recipe name (migrate-apply, migrate-param) or a JSON job specification file.").Default("migrate-apply").PlaceHolder("NAME|FILE").String()
		meta      = run.Flag("meta", "Dispatch meta for a parameterized job, repeatable (--meta command=plan).").PlaceHolder("KEY=VALUE").StringMap()
		image     = run.Flag("image", "Image of the migration task, e.g. outpost-migrate:v0.17.0 (default: the job's).").PlaceHolder("IMAGE").String()
		task      = run.Flag("task", "Task whose exit code and report count (default: the task running `migrate`).").String()
		timeout   = durationFlag(run.Flag("timeout", "Give up waiting after this long (exit 75; the job keeps running). 0 waits for ever.").Default("1h"))
		addr      = run.Flag("addr", "Nomad HTTP address (default NOMAD_ADDR or http://127.0.0.1:4646).").PlaceHolder("URL").String()
		namespace = run.Flag("namespace", "Nomad namespace (default NOMAD_NAMESPACE).").String()
		region    = run.Flag("region", "Nomad region (default NOMAD_REGION).").String()
		taskLogs  = run.Flag("task-logs", "Copy the task's stderr (the tool's logs) to stderr when it is done.").Default("true").Bool()
	)
	c.jobs = func(ctx context.Context, inv *invocation) int {
		name, file := nomadrun.ResolveJob(*jobFlag)
		var out bytes.Buffer
		res, _ := nomadrun.Run(ctx, nomadrun.Options{
			Addr: *addr, Namespace: *namespace, Region: *region,
			Job: name, JobFile: file, Task: *task, Meta: *meta, Image: *image,
			Timeout:         *timeout,
			RelayTaskStderr: *taskLogs,
			Stdout:          &out,
			Stderr:          inv.scrub.Writer(inv.e.stderr),
			Validate:        report.ValidateJSON,
			ToolVersion:     version,
		})
		inv.relay(out.Bytes())
		return res.ExitCode
	}
}

// relay prints a report line that another process (or the Nomad runner)
// wrote: as it is in JSON, as text with -o text.
func (inv *invocation) relay(line []byte) {
	var rep report.Report
	if inv.jsonOut || json.Unmarshal(bytes.TrimSpace(line), &rep) != nil {
		_, _ = inv.e.stdout.Write(inv.scrub.Bytes(line))
		return
	}
	_ = report.WriteTextWidth(inv.scrub.Writer(inv.e.stdout), &rep, inv.scrub, inv.textWidth())
}
