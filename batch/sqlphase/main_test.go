package sqlphase

import (
	"testing"

	"github.com/outpost-migrate/outpost/batch/testsrv"
)

func TestMain(m *testing.M) { testsrv.Main(m) }
