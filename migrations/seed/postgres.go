package seed

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outpost-migrate/outpost/report"
)

// PGOptions describe the PostgreSQL event log. The zero value of Tenants
// and DestinationsPerTenant means 100 and 3.
type PGOptions struct {
	// Version is the schema version the tables are at: 1 (events,
	// deliveries), 2 (+ deliveries.code, response_data), 3 (+
	// event_delivery_index), 4 (+ manual, attempt on deliveries and
	// event_delivery_index).
	Version int
	// Events is the number of events.
	Events int
	// DeliveriesPerEvent is the number of delivery attempts of each event
	// (attempt 1..n, the last one a success 80% of the time).
	DeliveriesPerEvent int
	// OrphanRatio is the share of deliveries whose event_id names no event
	// (migration 5 deletes them): exactly floor(Events*DeliveriesPerEvent*
	// OrphanRatio) of them, spread evenly.
	OrphanRatio float64
	// Seed selects the data: same options, same rows.
	Seed int64
	// Tenants and DestinationsPerTenant bound the ids events refer to.
	Tenants               int
	DestinationsPerTenant int
}

// PGStats counts the rows WritePostgres wrote.
type PGStats struct {
	Events     int64 `json:"events"`
	Deliveries int64 `json:"deliveries"`
	Orphans    int64 `json:"orphans"`    // deliveries without an event
	IndexRows  int64 `json:"index_rows"` // event_delivery_index (version >= 3)
}

// CopyFromer is what WritePostgres needs: *pgx.Conn, *pgxpool.Pool and
// pgx.Tx all have it.
type CopyFromer interface {
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
}

// pgSpanStart..+pgSpan is when the events happen; times are whole
// microseconds, PostgreSQL's precision, so rows read back equal.
var pgSpanStart = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

const pgSpan = 30 * 24 * time.Hour

type pgConfig struct {
	PGOptions
	orphanPPM int64 // OrphanRatio in parts per million
}

func (o PGOptions) compile() (*pgConfig, error) {
	bad := func(format string, args ...any) error {
		return report.E(report.CodeConfig, "seed: postgres: "+format, args...)
	}
	switch {
	case o.Version < 1 || o.Version > 4:
		return nil, bad("schema version %d is not supported (1-4)", o.Version)
	case o.Events < 0 || o.DeliveriesPerEvent < 0 || o.Tenants < 0 || o.DestinationsPerTenant < 0:
		return nil, bad("negative count")
	case !(o.OrphanRatio >= 0 && o.OrphanRatio <= 1):
		return nil, bad("orphan ratio %v is not within [0, 1]", o.OrphanRatio)
	}
	if o.Tenants == 0 {
		o.Tenants = 100
	}
	if o.DestinationsPerTenant == 0 {
		o.DestinationsPerTenant = 3
	}
	return &pgConfig{PGOptions: o, orphanPPM: int64(math.Round(o.OrphanRatio * 1e6))}, nil
}

// orphan tells whether delivery number d (over all events) is an orphan:
// exactly floor(n*ppm/1e6) of the first n are.
func (c *pgConfig) orphan(d int64) bool {
	return (d+1)*c.orphanPPM/1e6 > d*c.orphanPPM/1e6
}

type pgEvent struct {
	id, tenant, dest, topic string
	time                    time.Time
	retry                   bool
	data, metadata          string
	r                       *rng // continues with the event's deliveries
}

type pgDelivery struct {
	id, eventID, status, code string
	time                      time.Time
	response                  any // JSON text or nil
	manual                    bool
	attempt                   int32
	orphan                    bool
}

func (c *pgConfig) event(e int) pgEvent {
	r := newRNG(c.Seed, streamEvent+uint64(e))
	tn := r.intn(c.Tenants)
	dn := r.intn(c.DestinationsPerTenant)
	us := r.int63n(int64(pgSpan / time.Microsecond))
	ev := pgEvent{
		id:     "evt_" + base36(e) + r.word(6),
		tenant: "tn_" + base36(tn),
		dest:   "des_" + base36(tn) + "_" + base36(dn),
		topic:  r.pick(allTopics),
		time:   pgSpanStart.Add(time.Duration(us) * time.Microsecond),
		retry:  r.chance(0.8),
		r:      r,
	}
	// Keys out of alphabetical order, as producers send them.
	ev.data = `{"user_id":"usr_` + r.word(8) + `","amount":` + strconv.Itoa(r.intn(100000)) +
		`,"currency":"` + r.pick([]string{"usd", "eur", "jpy"}) + `","note":"caf\u00e9 \"quoted\""}`
	ev.metadata = jsonObject("source", r.pick([]string{"api", "dashboard", "retry"}))
	return ev
}

// deliveries draws the attempts of ev, number d0 being the global index of
// the first.
func (c *pgConfig) deliveries(e int, ev *pgEvent, d0 int64) []pgDelivery {
	r := ev.r
	n := c.DeliveriesPerEvent
	out := make([]pgDelivery, n)
	at := ev.time
	for k := 0; k < n; k++ {
		at = at.Add(time.Duration(1+r.intn(600)) * time.Second)
		success := k == n-1 && r.chance(0.8)
		dl := pgDelivery{
			id:      "del_" + base36(e) + "_" + strconv.Itoa(k),
			eventID: ev.id,
			time:    at,
			attempt: int32(k + 1),
			manual:  r.chance(0.1) && k > 0,
			orphan:  c.orphan(d0 + int64(k)),
		}
		code := r.pick([]string{"500", "503", "429", "ECONNREFUSED"})
		if success {
			dl.status, code = "success", r.pick([]string{"200", "201", "202"})
		} else {
			dl.status = "failed"
		}
		dl.code = code
		if !r.chance(0.2) {
			dl.response = `{"status":` + strconv.Quote(code) + `,"body":"` + r.word(10) + `"}`
		}
		if dl.orphan {
			dl.eventID = "evt_gone_" + base36(int(d0)+k)
		}
		out[k] = dl
	}
	return out
}

// WritePostgres writes the event log of opts with COPY (pgx CopyFrom,
// streaming: memory does not grow with the row count) into events,
// deliveries and, from version 3, event_delivery_index. The tables must
// exist at opts.Version (created by the SQL migrations); rows are added to
// what is there. Each table is one COPY, so a failure leaves the earlier
// tables written. Index rows exist only for deliveries that have an event.
func WritePostgres(ctx context.Context, db CopyFromer, opts PGOptions) (PGStats, error) {
	c, err := opts.compile()
	if err != nil {
		return PGStats{}, err
	}
	var st PGStats

	// events
	e := 0
	n, err := db.CopyFrom(ctx, pgx.Identifier{"events"},
		[]string{"id", "tenant_id", "destination_id", "time", "topic", "eligible_for_retry", "data", "metadata"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if e >= c.Events {
				return nil, nil
			}
			ev := c.event(e)
			e++
			return []any{ev.id, ev.tenant, ev.dest, ev.time, ev.topic, ev.retry, ev.data, ev.metadata}, nil
		}))
	if err != nil {
		return st, classifyPG(err, "seed: copy events")
	}
	st.Events = n

	// deliveries, then event_delivery_index: both walk events again
	// (cheap) rather than hold them.
	cols := []string{"id", "event_id", "destination_id", "status", "time"}
	if c.Version >= 2 {
		cols = append(cols, "code", "response_data")
	}
	if c.Version >= 4 {
		cols = append(cols, "manual", "attempt")
	}
	n, err = db.CopyFrom(ctx, pgx.Identifier{"deliveries"}, cols,
		c.walk(func(ev *pgEvent, dl *pgDelivery) []any {
			if dl.orphan {
				st.Orphans++
			}
			row := []any{dl.id, dl.eventID, ev.dest, dl.status, dl.time}
			if c.Version >= 2 {
				row = append(row, dl.code, dl.response)
			}
			if c.Version >= 4 {
				row = append(row, dl.manual, dl.attempt)
			}
			return row
		}))
	if err != nil {
		return st, classifyPG(err, "seed: copy deliveries")
	}
	st.Deliveries = n
	if c.Version < 3 {
		return st, nil
	}

	cols = []string{"event_id", "delivery_id", "tenant_id", "destination_id", "event_time", "delivery_time", "topic", "status"}
	if c.Version >= 4 {
		cols = append(cols, "manual", "attempt")
	}
	n, err = db.CopyFrom(ctx, pgx.Identifier{"event_delivery_index"}, cols,
		c.walk(func(ev *pgEvent, dl *pgDelivery) []any {
			if dl.orphan {
				return nil
			}
			row := []any{ev.id, dl.id, ev.tenant, ev.dest, ev.time, dl.time, ev.topic, dl.status}
			if c.Version >= 4 {
				row = append(row, dl.manual, dl.attempt)
			}
			return row
		}))
	if err != nil {
		return st, classifyPG(err, "seed: copy event_delivery_index")
	}
	st.IndexRows = n
	return st, nil
}

// walk is a CopyFromSource over every delivery of every event; row returns
// the row of one delivery, or nil to skip it.
func (c *pgConfig) walk(row func(ev *pgEvent, dl *pgDelivery) []any) pgx.CopyFromSource {
	var (
		e    int
		ev   pgEvent
		dls  []pgDelivery
		k    int
		d0   int64
		next int64
	)
	return pgx.CopyFromFunc(func() ([]any, error) {
		for {
			if k >= len(dls) {
				if e >= c.Events {
					return nil, nil
				}
				ev = c.event(e)
				d0 = next
				dls = c.deliveries(e, &ev, d0)
				next += int64(len(dls))
				e++
				k = 0
				continue
			}
			dl := &dls[k]
			k++
			if r := row(&ev, dl); r != nil {
				return r, nil
			}
		}
	})
}

// classifyPG gives a PostgreSQL error its report code.
func classifyPG(err error, doing string) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", doing, err) // report.CodeOf maps a deadline to a timeout
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "42501", "28000", "28P01": // insufficient_privilege, auth
			return report.Wrap(report.CodePermission, err, "%s", doing)
		case "42P01", "42703": // undefined table or column: not the expected schema version
			return report.Wrap(report.CodeDataRefused, err, "%s: the schema is not at the version asked for", doing)
		case "57P03", "53300", "40001", "40P01": // cannot connect now, too many connections, serialization, deadlock
			return report.Wrap(report.CodeTemporary, err, "%s", doing)
		}
		return report.Wrap(report.CodeUnknown, err, "%s", doing)
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	if errors.As(err, &ne) || errors.As(err, &ce) || pgconn.SafeToRetry(err) {
		return report.Wrap(report.CodeUnreachable, err, "%s", doing)
	}
	return report.Wrap(report.CodeUnknown, err, "%s", doing)
}
