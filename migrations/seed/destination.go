package seed

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// destDraw is everything drawn at random for one destination, in the order
// the generator has always drawn it (the recorded dataset hashes depend on
// that order).
type destDraw struct {
	typ, topics, cfg, meta, filter string
	topicList                      []string
	created, disabledAt, updated   stamp
	delAt                          stamp
	delTTL                         time.Duration
	disabled, hasUpdated           bool
	hasDM, hasMeta, hasFilter      bool
	missing                        bool
	credentials, deliveryMetadata  string
}

func (c *config) drawDestination(r *rng, tenantCreated stamp) destDraw {
	var x destDraw
	x.typ = r.pick(destinationTypes)
	x.topics, x.topicList = "*", []string{"*"}
	if !r.chance(0.3) {
		k := 1 + r.intn(3)
		off := r.intn(len(allTopics))
		x.topicList = nil
		for i := 0; i < k; i++ {
			x.topicList = append(x.topicList, allTopics[(off+i)%len(allTopics)])
		}
		x.topics = strings.Join(x.topicList, ",")
	}
	x.cfg = configJSON(r, x.typ)
	x.created = c.stamp(r, tenantCreated.ns, 60*day)
	x.disabled = r.chance(c.DisabledRatio)
	x.disabledAt = c.stamp(r, x.created.ns+int64(time.Minute), 30*day)
	x.hasUpdated = r.chance(0.5)
	x.updated = c.stamp(r, x.created.ns+int64(time.Second), 60*day)
	x.hasDM = r.chance(0.3)
	x.hasMeta = r.chance(0.3)
	x.meta = jsonObject("team", "team-"+r.word(3), "env", r.pick([]string{"prod", "staging"}))
	x.hasFilter = r.chance(0.25)
	x.filter = filterJSON(r)
	x.missing = r.chance(c.MissingFromSummaryRatio)
	x.delAt, x.delTTL = c.deletion(r)
	if c.BinaryCredentials {
		x.credentials, x.deliveryMetadata = blob(r), blob(r)
	} else {
		x.credentials = jsonObject("secret", "whsec_"+r.word(24))
		x.deliveryMetadata = jsonObject("source", "outpost", "region", r.pick(regions))
	}
	return x
}

// destination generates destination j of t and its summary entry ("" when
// it is not listed).
func (c *config) destination(r *rng, t *Tenant, j int, tenantCreated, tenantDelAt stamp, tenantDelTTL time.Duration) (Destination, string) {
	d := Destination{}
	d.ColonID = r.chance(c.ColonIDRatio)
	d.ID = destinationID(r, j, d.ColonID)
	d.Deleted = r.chance(c.SoftDeletedRatio) || t.Deleted
	x := c.drawDestination(r, tenantCreated)
	if t.Deleted {
		x.delAt, x.delTTL = tenantDelAt, tenantDelTTL
	}
	d.Key = Key{Name: c.destinationKey(t.ID, d.ID), Kind: KindDestination, Type: TypeHash}
	if d.Deleted {
		d.Key.Fields = []Field{{"deleted_at", x.delAt.rfc3339()}}
		d.Key.TTL = x.delTTL
	} else {
		c.liveDestination(&d, &x)
	}
	if c.Layout >= LayoutV3 {
		d.Key.Fields = append(d.Key.Fields, Field{"entity", "destination"})
	}
	d.InSummary = !d.Deleted && !x.missing
	if !d.InSummary {
		return d, ""
	}
	return d, summaryEntry(&d, &x)
}

// liveDestination fills the fields of a destination that is not deleted.
func (c *config) liveDestination(d *Destination, x *destDraw) {
	f := []Field{
		{"id", d.ID}, {"type", x.typ}, {"topics", x.topics}, {"config", x.cfg},
		{"credentials", x.credentials}, {"created_at", c.ts(x.created)},
	}
	if x.hasUpdated {
		f = append(f, Field{"updated_at", c.ts(x.updated)})
	}
	if x.disabled {
		d.Disabled = true
		// disabled_at is never converted by 002: the server converts it lazily.
		f = append(f, Field{"disabled_at", x.disabledAt.rfc3339()})
	}
	if x.hasDM {
		f = append(f, Field{"delivery_metadata", x.deliveryMetadata})
	}
	if x.hasMeta {
		f = append(f, Field{"metadata", x.meta})
	}
	if x.hasFilter {
		f = append(f, Field{"filter", x.filter})
	}
	d.Key.Fields = f
	if c.BinaryCredentials {
		d.Binary = 1
		if x.hasDM {
			d.Binary++
		}
	}
}

// summaryEntry is d's entry in its tenant's summary as Outpost marshals it:
// id, type, topics, filter (omitted when empty), disabled.
func summaryEntry(d *Destination, x *destDraw) string {
	topicsJSON, _ := json.Marshal(x.topicList)
	var b strings.Builder
	b.WriteString(`{"id":` + jsonString(d.ID) + `,"type":` + jsonString(x.typ) + `,"topics":` + string(topicsJSON))
	if x.hasFilter {
		b.WriteString(`,"filter":` + x.filter)
	}
	b.WriteString(`,"disabled":` + strconv.FormatBool(d.Disabled) + `}`)
	return b.String()
}
