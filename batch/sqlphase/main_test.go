package sqlphase

import (
	"testing"

	"github.com/outpost-migrate/outpost/batch/servertest"
)

func TestMain(m *testing.M) { servertest.Main(m) }
