package main

import (
	"context"
	"io"

	"github.com/alecthomas/kingpin/v2"

	"github.com/outpost-migrate/outpost/jobs/nomadrun"
	"github.com/outpost-migrate/outpost/report"
)

// registerJobs adds `outpost jobs nomad run` to app and returns its action
// keyed by the command's FullCommand() ("jobs nomad run"). The action runs
// the job, has printed one report line on stdout when it returns, and gives
// the exit code: the migration task's own when its report was relayed, the
// runner's (see jobs/README.md) otherwise.
//
// ctx should be cancelled on SIGINT/SIGTERM with a cause that has an
// `ExitCode() int` method returning 130 or 143: the runner then reports
// INTERRUPTED or TERMINATED with that code and leaves the Nomad job running.
//
// The ACL token is read from NOMAD_TOKEN only (never a flag, so it stays out
// of process listings and shell history); the address, namespace, region and
// TLS settings come from NOMAD_ADDR, NOMAD_NAMESPACE, NOMAD_REGION,
// NOMAD_CACERT, NOMAD_CAPATH, NOMAD_CLIENT_CERT, NOMAD_CLIENT_KEY,
// NOMAD_TLS_SERVER_NAME and NOMAD_SKIP_VERIFY unless a flag says otherwise.
func registerJobs(app *kingpin.Application) map[string]func(ctx context.Context, stdout, stderr io.Writer) int {
	jobs := app.Command("jobs", "Run the migration through an orchestrator and relay its report.")
	nomad := jobs.Command("nomad", "Nomad batch jobs (recipes in jobs/nomadspecs).")
	run := nomad.Command("run", "Register (or dispatch) a migration job, wait until it is dead, print the task's report and exit with the task's exit code.")

	var (
		jobFlag   = run.Flag("job", "Embedded recipe name (migrate-apply, migrate-param) or a JSON job specification file.").Default("migrate-apply").PlaceHolder("NAME|FILE").String()
		meta      = run.Flag("meta", "Dispatch meta for a parameterized job, repeatable (--meta command=plan).").PlaceHolder("KEY=VALUE").StringMap()
		image     = run.Flag("image", "Image of the migration task, e.g. hookdeck/outpost:v0.17.0 (default: the job's).").PlaceHolder("IMAGE").String()
		task      = run.Flag("task", "Task whose exit code and report count (default: the task running `migrate`).").String()
		timeout   = run.Flag("timeout", "Give up waiting after this long (exit 75; the job keeps running). 0 waits for ever.").Default("1h").Duration()
		addr      = run.Flag("addr", "Nomad HTTP address (default NOMAD_ADDR or http://127.0.0.1:4646).").PlaceHolder("URL").String()
		namespace = run.Flag("namespace", "Nomad namespace (default NOMAD_NAMESPACE).").String()
		region    = run.Flag("region", "Nomad region (default NOMAD_REGION).").String()
		taskLogs  = run.Flag("task-logs", "Copy the task's stderr (the tool's logs) to stderr when it is done.").Default("true").Bool()
	)

	return map[string]func(ctx context.Context, stdout, stderr io.Writer) int{
		run.FullCommand(): func(ctx context.Context, stdout, stderr io.Writer) int {
			name, file := nomadrun.ResolveJob(*jobFlag)
			res, _ := nomadrun.Run(ctx, nomadrun.Options{
				Addr:            *addr,
				Namespace:       *namespace,
				Region:          *region,
				Job:             name,
				JobFile:         file,
				Task:            *task,
				Meta:            *meta,
				Image:           *image,
				Timeout:         *timeout,
				RelayTaskStderr: *taskLogs,
				Stdout:          stdout,
				Stderr:          stderr,
				Validate:        report.ValidateJSON,
				ToolVersion:     version,
			})
			return res.ExitCode
		},
	}
}
