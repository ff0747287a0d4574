package seed

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-migrate/outpost/report"
)

// Layouts of the Redis keyspace the generator can write (see the storage spec).
const (
	// LayoutV0 is the legacy layout: tenant:<tid>, tenant:<tid>:destinations,
	// tenant:<tid>:destination:<did>, RFC3339 timestamps, no entity field.
	// It was never prefixed by a deployment id.
	LayoutV0 = 0
	// LayoutV1 is the hash-tagged layout of migration 001: P+tenant:{<tid>}:...
	// with RFC3339 timestamps and no entity field.
	LayoutV1 = 1
	// LayoutV2 is v1 names with created_at/updated_at as Unix milliseconds
	// (after 002) and no entity field.
	LayoutV2 = 2
	// LayoutV3 is the current layout: v1 names, Unix-ms created_at/updated_at
	// and the entity field (after 003).
	LayoutV3 = 3
)

// DefaultZones are the UTC offsets created_at/updated_at/disabled_at/deleted_at
// are written in when Options.Zones is empty: v0 servers wrote timestamps in
// their local zone, so real data mixes them.
var DefaultZones = []string{"Z", "+07:00", "-05:00", "+05:30", "+02:00", "-03:30", "+12:45"}

// Options describe the Redis dataset. The zero value is a valid, empty v0
// dataset; DefaultOptions gives a realistic small one.
type Options struct {
	// Tenants is the number of tenants (live and soft-deleted).
	Tenants int
	// DestinationsPerTenant is the average number of destinations: each
	// tenant gets a uniform 0..2x of it.
	DestinationsPerTenant int
	// Seed selects the dataset: same Options, same keys, fields and TTLs.
	Seed int64
	// DeploymentID prefixes every key with "<id>:" (layouts 1-3 only).
	DeploymentID string
	// Layout is LayoutV0..LayoutV3.
	Layout int

	// SoftDeletedRatio is the share of tenants, and of the destinations of
	// live tenants, that are soft-deleted: a hash holding only deleted_at
	// with a TTL of at most 7 days. A soft-deleted tenant has no summary
	// and all its destinations are soft-deleted too.
	SoftDeletedRatio float64
	// ColonIDRatio is the share of tenant ids, and of destination ids, that
	// contain ':'.
	ColonIDRatio float64
	// MissingFromSummaryRatio is the share of live destinations that the
	// tenant's summary hash does not list.
	MissingFromSummaryRatio float64
	// DisabledRatio is the share of live destinations with disabled_at.
	DisabledRatio float64
	// BinaryCredentials makes credentials (always) and delivery_metadata
	// (when present) random bytes shaped like AES-256-GCM output (12-byte
	// nonce, ciphertext, 16-byte tag), each containing 0x00 and never valid
	// UTF-8. Without it both are plain JSON text.
	BinaryCredentials bool
	// UnrelatedKeys is how many non-tenant Outpost keys to add (installation
	// id, log retention, search index stand-in, outpost:lock, idempotency
	// strings, alert sets, rsmq hashes and sorted sets).
	UnrelatedKeys int
	// Zones are the UTC offsets ("Z" or "±hh:mm") that RFC3339 timestamps
	// are written in; empty means DefaultZones.
	Zones []string
}

// DefaultOptions is a small realistic v0 dataset: 1000 tenants, about 3000
// destinations, 5% soft-deleted, 5% ids with ':', 3% of live destinations
// missing from their summary, 10% disabled, binary credentials, 100
// unrelated keys, seed 1, every zone of DefaultZones.
func DefaultOptions() Options {
	return Options{
		Tenants:                 1000,
		DestinationsPerTenant:   3,
		Seed:                    1,
		Layout:                  LayoutV0,
		SoftDeletedRatio:        0.05,
		ColonIDRatio:            0.05,
		MissingFromSummaryRatio: 0.03,
		DisabledRatio:           0.10,
		BinaryCredentials:       true,
		UnrelatedKeys:           100,
	}
}

// Prefix is the key prefix P: "<DeploymentID>:" or "".
func (o Options) Prefix() string {
	if o.DeploymentID == "" {
		return ""
	}
	return o.DeploymentID + ":"
}

// config is Options checked and compiled for generation.
type config struct {
	Options
	prefix string
	zones  []*time.Location
}

func (o Options) compile() (*config, error) {
	bad := func(format string, args ...any) error {
		return report.E(report.CodeConfig, "seed: "+format, args...)
	}
	switch {
	case o.Layout < LayoutV0 || o.Layout > LayoutV3:
		return nil, bad("layout %d is not one of 0, 1, 2, 3", o.Layout)
	case o.Layout == LayoutV0 && o.DeploymentID != "":
		return nil, bad("layout 0 with deployment id %q: v0 keys were never prefixed", o.DeploymentID)
	case o.Tenants < 0 || o.DestinationsPerTenant < 0 || o.UnrelatedKeys < 0:
		return nil, bad("negative count (tenants %d, destinations per tenant %d, unrelated keys %d)",
			o.Tenants, o.DestinationsPerTenant, o.UnrelatedKeys)
	}
	for name, r := range map[string]float64{
		"soft-deleted": o.SoftDeletedRatio, "colon id": o.ColonIDRatio,
		"missing-from-summary": o.MissingFromSummaryRatio, "disabled": o.DisabledRatio,
	} {
		if !(r >= 0 && r <= 1) {
			return nil, bad("%s ratio %v is not within [0, 1]", name, r)
		}
	}
	c := &config{Options: o, prefix: o.Prefix()}
	zones := o.Zones
	if len(zones) == 0 {
		zones = DefaultZones
	}
	for _, z := range zones {
		loc, err := parseZone(z)
		if err != nil {
			return nil, bad("%v", err)
		}
		c.zones = append(c.zones, loc)
	}
	return c, nil
}

// parseZone turns "Z" or "±hh:mm" into a fixed zone. Fixed offsets, not
// tz database names, so the output does not depend on the machine's tzdata.
func parseZone(z string) (*time.Location, error) {
	if z == "Z" {
		return time.UTC, nil
	}
	if len(z) != 6 || (z[0] != '+' && z[0] != '-') || z[3] != ':' {
		return nil, fmt.Errorf("zone %q is not Z or ±hh:mm", z)
	}
	h, err1 := strconv.Atoi(z[1:3])
	m, err2 := strconv.Atoi(z[4:6])
	if err1 != nil || err2 != nil || h > 14 || m > 59 {
		return nil, fmt.Errorf("zone %q is not Z or ±hh:mm", z)
	}
	off := h*3600 + m*60
	if z[0] == '-' {
		off = -off
	}
	return time.FixedZone(strings.TrimPrefix(z, "+"), off), nil
}
