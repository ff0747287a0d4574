package nomadtest

import (
	"slices"
	"testing"

	"github.com/hashicorp/nomad/api"

	"github.com/outpost-migrate/outpost/jobs/nomadspecs"
)

func TestInterpolateUsesTheJobsMeta(t *testing.T) {
	b, err := nomadspecs.JSON(nomadspecs.MigrateParam)
	if err != nil {
		t.Fatal(err)
	}
	j, err := nomadspecs.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	args, err := nomadspecs.Args(j.TaskGroups[0].Tasks[0])
	if err != nil {
		t.Fatal(err)
	}
	// The job's meta holds the default lock_timeout; dispatch adds command.
	j.Meta["command"] = "verify"
	got := Interpolate(j, args)
	want := []string{"migrate", "verify", "--yes", "--wait-for", "2m", "--lock-timeout", "10m", "--max-runtime", "1h", "--output", "json"}
	if !slices.Equal(got, want) {
		t.Fatalf("Interpolate = %q, want %q", got, want)
	}
	// An unknown key becomes empty, as a Nomad client renders it.
	if got := Interpolate(&api.Job{}, []string{"x${NOMAD_META_nope}y"}); got[0] != "xy" {
		t.Fatalf("unknown meta: %q", got)
	}
}
