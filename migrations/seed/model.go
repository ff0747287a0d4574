package seed

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind says what an entry of the keyspace is.
type Kind string

const (
	KindTenant      Kind = "tenant"      // tenant hash (live or soft-deleted)
	KindSummary     Kind = "summary"     // tenant:...:destinations hash
	KindDestination Kind = "destination" // destination hash (live or soft-deleted)
	KindUnrelated   Kind = "unrelated"   // any other Outpost key
)

// Redis types of the generated keys, as TYPE names them.
const (
	TypeHash   = "hash"
	TypeString = "string"
	TypeSet    = "set"
	TypeZSet   = "zset"
)

// Field is one hash field. Values are binary-safe Go strings.
type Field struct{ Name, Value string }

// ZMember is one member of a sorted set.
type ZMember struct {
	Member string
	Score  float64
}

// Key is one key as the generator writes it.
type Key struct {
	Name     string
	Kind     Kind
	Type     string    // TypeHash, TypeString, TypeSet or TypeZSet
	Fields   []Field   // TypeHash, in write order
	Value    string    // TypeString
	Members  []string  // TypeSet
	ZMembers []ZMember // TypeZSet
	TTL      time.Duration
}

// Tenant is one tenant of the model with all its keys in the chosen layout.
type Tenant struct {
	Index   int
	ID      string
	ColonID bool // the id contains ':'
	Deleted bool // soft-deleted: Key holds only deleted_at, with a TTL
	Key     Key  // the tenant hash
	// Summary is the destinations summary hash, nil when it lists nothing
	// (a soft-deleted tenant, or every destination deleted or missing).
	Summary      *Key
	Destinations []Destination
}

// Keys returns the tenant's keys: tenant hash, summary (if any), then
// destinations in order.
func (t *Tenant) Keys() []*Key {
	out := make([]*Key, 0, 2+len(t.Destinations))
	out = append(out, &t.Key)
	if t.Summary != nil {
		out = append(out, t.Summary)
	}
	for i := range t.Destinations {
		out = append(out, &t.Destinations[i].Key)
	}
	return out
}

// Destination is one destination of a tenant.
type Destination struct {
	ID        string
	ColonID   bool
	Deleted   bool // soft-deleted: only deleted_at, TTL, not in the summary
	Disabled  bool // has disabled_at (live destinations only)
	InSummary bool // listed in the tenant's summary
	Binary    int  // number of binary fields (credentials, delivery_metadata)
	Key       Key
}

// The model's clock: every instant is fixed, so a dataset does not depend on
// when it is generated. TTLs of soft-deleted records are what would remain
// at modelNow of the 7 days from deleted_at.
var (
	modelNow    = time.Date(2025, 9, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	tenantsFrom = time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	tenantsTo   = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).UnixNano()
)

const (
	day         = int64(24 * time.Hour)
	deletionTTL = 7 * 24 * time.Hour
	minTTL      = time.Hour
)

// tsFormat is a way v0 servers wrote RFC3339 timestamps: prec is the
// precision in nanoseconds it keeps (Go's Format truncates the rest).
type tsFormat struct {
	layout string
	prec   int64
}

var tsFormats = []tsFormat{
	{"2006-01-02T15:04:05.000000000Z07:00", 1}, // RFC3339Nano, 9 digits
	{time.RFC3339Nano, 1},                      // trailing zeros trimmed
	{"2006-01-02T15:04:05.000Z07:00", int64(time.Millisecond)},
	{"2006-01-02T15:04:05.000000Z07:00", int64(time.Microsecond)},
	{time.RFC3339, int64(time.Second)},
}

// stamp is an instant with the zone and format it is written in.
type stamp struct {
	ns  int64 // Unix nanoseconds, already truncated to the format's precision
	loc *time.Location
	f   tsFormat
}

func (s stamp) rfc3339() string { return time.Unix(0, s.ns).In(s.loc).Format(s.f.layout) }

// ms is the Unix-ms string the current layout holds: the instant truncated
// to the millisecond, computed from the instant itself (not by parsing).
func (s stamp) ms() string { return strconv.FormatInt(s.ns/int64(time.Millisecond), 10) }

// stamp draws an instant in [from, from+span).
func (c *config) stamp(r *rng, from, span int64) stamp {
	ns := from + r.int63n(span)
	loc := c.zones[r.intn(len(c.zones))]
	f := tsFormats[r.intn(len(tsFormats))]
	ns -= ns % f.prec
	return stamp{ns: ns, loc: loc, f: f}
}

// deletion draws a soft-delete: deleted_at and the TTL that remains.
func (c *config) deletion(r *rng) (stamp, time.Duration) {
	ttl := minTTL + time.Duration(r.int63n(int64(deletionTTL-minTTL)))
	ttl -= ttl % time.Millisecond
	s := c.stamp(r, modelNow-int64(deletionTTL-ttl), 1)
	return s, ttl
}

// ts renders a created_at/updated_at the way the layout stores it.
func (c *config) ts(s stamp) string {
	if c.Layout >= LayoutV2 {
		return s.ms()
	}
	return s.rfc3339()
}

// Key names.
func (c *config) tenantKey(tid string) string {
	if c.Layout == LayoutV0 {
		return "tenant:" + tid
	}
	return c.prefix + "tenant:{" + tid + "}:tenant"
}

func (c *config) summaryKey(tid string) string {
	if c.Layout == LayoutV0 {
		return "tenant:" + tid + ":destinations"
	}
	return c.prefix + "tenant:{" + tid + "}:destinations"
}

func (c *config) destinationKey(tid, did string) string {
	if c.Layout == LayoutV0 {
		return "tenant:" + tid + ":destination:" + did
	}
	return c.prefix + "tenant:{" + tid + "}:destination:" + did
}

func base36(i int) string { return strconv.FormatInt(int64(i), 36) }

// tenantID: plain ids are unique by index; ids with ':' too. No id contains
// "destination", '{' or '}', so v0 names stay unambiguous and v1 hash tags
// are the whole id.
func tenantID(r *rng, i int, colon bool) string {
	w := r.word(5)
	pattern := r.intn(3)
	if !colon {
		return "tn_" + base36(i) + w
	}
	switch pattern {
	case 0:
		return "org:" + w + ":" + base36(i)
	case 1:
		return "team:" + base36(i) + ":prod"
	default:
		return "acme:eu:" + base36(i) + ":" + w[:2]
	}
}

func destinationID(r *rng, j int, colon bool) string {
	w := r.word(6)
	if !colon {
		return "des_" + base36(j) + w
	}
	if w[0] < 'n' {
		return "dest:" + base36(j) + ":" + w[:3]
	}
	return "wh:" + w[:4] + ":" + base36(j)
}

var (
	destinationTypes = []string{"webhook", "webhook", "webhook", "aws_sqs", "rabbitmq", "hookdeck", "aws_kinesis", "azure_servicebus", "gcp_pubsub"}
	allTopics        = []string{"user.created", "user.updated", "user.deleted", "order.placed", "order.shipped", "invoice.paid", "payment.failed"}
	plans            = []string{"free", "pro", "enterprise"}
	regions          = []string{"us-east-1", "eu-west-1", "ap-southeast-1"}
)

// jsonObject renders string pairs as a JSON object in the given order (a
// map would sort them; real payloads keep their writer's order).
func jsonObject(kv ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(jsonString(kv[i]))
		b.WriteByte(':')
		b.WriteString(jsonString(kv[i+1]))
	}
	b.WriteByte('}')
	return b.String()
}

func jsonString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

func configJSON(r *rng, typ string) string {
	w := r.word(8)
	switch typ {
	case "webhook":
		return jsonObject("url", "https://hooks.example.com/"+w)
	case "aws_sqs":
		return jsonObject("queue_url", "https://sqs."+r.pick(regions)+".amazonaws.com/123456789012/q-"+w)
	case "rabbitmq":
		return jsonObject("server_url", "amqp://mq.example.com:5672", "exchange", "events-"+w)
	case "aws_kinesis":
		return jsonObject("stream_name", "s-"+w, "region", r.pick(regions))
	case "azure_servicebus":
		return jsonObject("name", "topic-"+w)
	case "gcp_pubsub":
		return jsonObject("project_id", "proj-"+w[:4], "topic", "t-"+w[4:])
	default:
		return "{}"
	}
}

// blob is random bytes shaped like AES-256-GCM output (12-byte nonce,
// ciphertext, 16-byte tag) that always holds a 0x00 and is never valid
// UTF-8, so a copy through a text path shows.
func blob(r *rng) string {
	b := r.bytes(12 + 8 + r.intn(72) + 16)
	b[r.intn(len(b))] = 0x00
	if utf8.Valid(b) {
		b[len(b)-1] = 0xff
	}
	return string(b)
}

func filterJSON(r *rng) string {
	switch r.intn(3) {
	case 0:
		return `{"data":{"amount":{"$gte":` + strconv.Itoa(10+r.intn(1000)) + `}}}`
	case 1:
		return `{"data":{"type":` + jsonString(r.pick(allTopics)) + `}}`
	default:
		return `{"metadata":{"source":{"$in":["api","dashboard"]}}}`
	}
}

// tenant generates tenant i. It draws the same values whatever the layout,
// deployment id and ratios, so layouts of one seed hold the same data.
func (c *config) tenant(i int) Tenant {
	r := newRNG(c.Seed, streamTenant+uint64(i))
	t := Tenant{Index: i}
	t.ColonID = r.chance(c.ColonIDRatio)
	t.ID = tenantID(r, i, t.ColonID)
	t.Deleted = r.chance(c.SoftDeletedRatio)
	created := c.stamp(r, tenantsFrom, tenantsTo-tenantsFrom)
	hasUpdated := r.chance(0.4)
	updated := c.stamp(r, created.ns+int64(time.Second), 60*day)
	hasMeta := r.chance(0.3)
	meta := jsonObject("plan", r.pick(plans), "region", r.pick(regions))
	delAt, delTTL := c.deletion(r)
	n := r.intn(2*c.DestinationsPerTenant + 1)

	t.Key = Key{Name: c.tenantKey(t.ID), Kind: KindTenant, Type: TypeHash}
	if t.Deleted {
		t.Key.Fields = []Field{{"deleted_at", delAt.rfc3339()}}
		t.Key.TTL = delTTL
	} else {
		f := []Field{{"id", t.ID}, {"created_at", c.ts(created)}}
		if hasUpdated {
			f = append(f, Field{"updated_at", c.ts(updated)})
		}
		if hasMeta {
			f = append(f, Field{"metadata", meta})
		}
		t.Key.Fields = f
	}
	if c.Layout >= LayoutV3 {
		t.Key.Fields = append(t.Key.Fields, Field{"entity", "tenant"})
	}

	var summary []Field
	t.Destinations = make([]Destination, 0, n)
	for j := 0; j < n; j++ {
		d, entry := c.destination(r, &t, j, created, delAt, delTTL)
		if entry != "" {
			summary = append(summary, Field{d.ID, entry})
		}
		t.Destinations = append(t.Destinations, d)
	}
	if len(summary) > 0 {
		t.Summary = &Key{Name: c.summaryKey(t.ID), Kind: KindSummary, Type: TypeHash, Fields: summary}
	}
	return t
}

// unrelated generates unrelated key i: four singletons first
// (installation id, log retention, search index stand-in, outpost:lock),
// then idempotency strings, alert sets, rsmq hashes and rsmq sorted sets in
// turn. Names are unique by index.
func (c *config) unrelated(i int) Key {
	r := newRNG(c.Seed, streamUnrelated+uint64(i))
	p := c.prefix
	k := Key{Kind: KindUnrelated}
	w := r.word(12)
	ttl := time.Hour + time.Duration(r.int63n(int64(23*time.Hour)))
	ttl -= ttl % time.Millisecond
	flag := r.chance(0.5)
	n := 1 + r.intn(5)
	str := func(name, v string, ttl time.Duration) Key {
		k.Name, k.Type, k.Value, k.TTL = name, TypeString, v, ttl
		return k
	}
	switch i {
	case 0:
		return str(p+"outpost:installation_id", "inst_"+w, 0)
	case 1:
		return str(p+"outpost:log_retention_ttl", []string{"604800", "2592000", "7776000"}[n%3], 0)
	case 2:
		// The real P+tenant_idx is a RediSearch index, not a key; a plain
		// Redis has none, so a stand-in of the kind FT-less data holds.
		if flag {
			return str(p+"tenant_idx", "search index stand-in", 0)
		}
		k.Name, k.Type = p+"tenant_idx", TypeHash
		k.Fields = []Field{{"stand_in", "tenant search index"}, {"on", "HASH"}, {"prefix", p + "tenant:"}}
		return k
	case 3:
		// Outpost's own lock is never prefixed.
		return str("outpost:lock", "tok_"+w, ttl)
	}
	id := base36(i)
	switch (i - 4) % 4 {
	case 0:
		return str(p+"idempotency:"+[]string{"publishmq", "deliverymq"}[n%2]+":evt_"+id+w[:4],
			[]string{"processed", "processing"}[n%2], ttl)
	case 1:
		k.Name, k.Type = p+"alert:tn_"+id+":des_"+w[:5]+":cf", TypeSet
		for x := 0; x < n; x++ {
			k.Members = append(k.Members, "att_"+id+"_"+strconv.Itoa(x))
		}
		if flag {
			k.TTL = 24 * time.Hour
		}
		return k
	case 2:
		k.Name, k.Type = p+"rsmq:deliverymq-retry-"+id+":Q", TypeHash
		k.Fields = []Field{{"vt", "30"}, {"delay", "0"}, {"maxsize", "65536"},
			{"totalrecv", strconv.Itoa(n * 17)}, {"totalsent", strconv.Itoa(n * 19)},
			{"created", "1735689600"}, {"modified", "1735689600"}}
		return k
	default:
		k.Name, k.Type = p+"rsmq:deliverymq-retry-"+id, TypeZSet
		for x := 0; x < n; x++ {
			k.ZMembers = append(k.ZMembers, ZMember{Member: "msg_" + id + "_" + strconv.Itoa(x) + w[:3],
				Score: float64(1756684800000 + int64(r.intn(86400000)))})
		}
		return k
	}
}

// ForEachTenant generates the tenants of opts in order and calls fn with
// each; it stops at fn's first error. Memory does not grow with the number
// of tenants. An invalid opts gives a report.CodeConfig error.
func ForEachTenant(opts Options, fn func(t Tenant) error) error {
	c, err := opts.compile()
	if err != nil {
		return err
	}
	for i := 0; i < c.Tenants; i++ {
		if err := fn(c.tenant(i)); err != nil {
			return err
		}
	}
	return nil
}

// ForEachKey calls fn with every key of the dataset: each tenant's keys
// (tenant, summary, destinations), then the unrelated keys.
func ForEachKey(opts Options, fn func(k Key) error) error {
	c, err := opts.compile()
	if err != nil {
		return err
	}
	for i := 0; i < c.Tenants; i++ {
		t := c.tenant(i)
		for _, k := range t.Keys() {
			if err := fn(*k); err != nil {
				return err
			}
		}
	}
	for i := 0; i < c.UnrelatedKeys; i++ {
		if err := fn(c.unrelated(i)); err != nil {
			return err
		}
	}
	return nil
}

// Stats counts what a dataset holds (and, from Write, the commands sent).
type Stats struct {
	Keys                    int `json:"keys"`
	KeysWithTTL             int `json:"keys_with_ttl"`
	Tenants                 int `json:"tenants"` // live tenant hashes
	SoftDeletedTenants      int `json:"soft_deleted_tenants"`
	Summaries               int `json:"summaries"`
	SummaryEntries          int `json:"summary_entries"`
	Destinations            int `json:"destinations"` // live destination hashes
	SoftDeletedDestinations int `json:"soft_deleted_destinations"`
	DisabledDestinations    int `json:"disabled_destinations"`
	MissingFromSummary      int `json:"missing_from_summary"` // live, not listed
	ColonTenantIDs          int `json:"colon_tenant_ids"`
	ColonDestinationIDs     int `json:"colon_destination_ids"`
	BinaryFields            int `json:"binary_fields"`
	Unrelated               int `json:"unrelated"`
	Commands                int `json:"commands,omitempty"` // sent by Write
}

func (s *Stats) add(o Stats) {
	s.Keys += o.Keys
	s.KeysWithTTL += o.KeysWithTTL
	s.Tenants += o.Tenants
	s.SoftDeletedTenants += o.SoftDeletedTenants
	s.Summaries += o.Summaries
	s.SummaryEntries += o.SummaryEntries
	s.Destinations += o.Destinations
	s.SoftDeletedDestinations += o.SoftDeletedDestinations
	s.DisabledDestinations += o.DisabledDestinations
	s.MissingFromSummary += o.MissingFromSummary
	s.ColonTenantIDs += o.ColonTenantIDs
	s.ColonDestinationIDs += o.ColonDestinationIDs
	s.BinaryFields += o.BinaryFields
	s.Unrelated += o.Unrelated
	s.Commands += o.Commands
}

func (s *Stats) addTenant(t *Tenant) {
	for _, k := range t.Keys() {
		s.addKey(k)
	}
	if t.Deleted {
		s.SoftDeletedTenants++
	} else {
		s.Tenants++
	}
	if t.ColonID {
		s.ColonTenantIDs++
	}
	if t.Summary != nil {
		s.Summaries++
		s.SummaryEntries += len(t.Summary.Fields)
	}
	for i := range t.Destinations {
		d := &t.Destinations[i]
		switch {
		case d.Deleted:
			s.SoftDeletedDestinations++
		default:
			s.Destinations++
			if !d.InSummary {
				s.MissingFromSummary++
			}
		}
		if d.Disabled {
			s.DisabledDestinations++
		}
		if d.ColonID {
			s.ColonDestinationIDs++
		}
		s.BinaryFields += d.Binary
	}
}

func (s *Stats) addKey(k *Key) {
	s.Keys++
	if k.TTL > 0 {
		s.KeysWithTTL++
	}
	if k.Kind == KindUnrelated {
		s.Unrelated++
	}
}

// Count computes the Stats of a dataset without writing it (Commands is 0).
func Count(opts Options) (Stats, error) {
	c, err := opts.compile()
	if err != nil {
		return Stats{}, err
	}
	var s Stats
	for i := 0; i < c.Tenants; i++ {
		t := c.tenant(i)
		s.addTenant(&t)
	}
	for i := 0; i < c.UnrelatedKeys; i++ {
		k := c.unrelated(i)
		s.addKey(&k)
	}
	return s, nil
}
