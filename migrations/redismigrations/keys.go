package redismigrations

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Kind is what an Outpost hash holds.
type Kind int

const (
	KindUnknown     Kind = iota
	KindTenant           // tenant record
	KindSummary          // tenant's destination summary
	KindDestination      // destination record
)

func (k Kind) String() string {
	switch k {
	case KindTenant:
		return "tenant"
	case KindSummary:
		return "summary"
	case KindDestination:
		return "destination"
	}
	return "unknown"
}

// Entity is the value migration 003 writes, "" for summaries.
func (k Kind) Entity() string {
	switch k {
	case KindTenant:
		return "tenant"
	case KindDestination:
		return "destination"
	}
	return ""
}

// Key is a parsed Outpost entity key.
type Key struct {
	Kind     Kind
	TenantID string
	DestID   string
}

// V1 returns the hash-tagged (layout v1+) name of k under prefix P.
func (k Key) V1(prefix string) string {
	switch k.Kind {
	case KindTenant:
		return prefix + "tenant:{" + k.TenantID + "}:tenant"
	case KindSummary:
		return prefix + "tenant:{" + k.TenantID + "}:destinations"
	case KindDestination:
		return prefix + "tenant:{" + k.TenantID + "}:destination:" + k.DestID
	}
	return ""
}

// V0 returns the legacy (layout v0, never prefixed) name of k.
func (k Key) V0() string {
	switch k.Kind {
	case KindTenant:
		return "tenant:" + k.TenantID
	case KindSummary:
		return "tenant:" + k.TenantID + ":destinations"
	case KindDestination:
		return "tenant:" + k.TenantID + ":destination:" + k.DestID
	}
	return ""
}

// V1Parses lists every way key reads as a hash-tagged key "P tenant:{tid}:
// tenant|destinations|destination:did": the tenant id is what lies between
// "tenant:{" and one of the "}:" that follow (an id may hold '}', ':' and
// "}:" itself, so "tenant:{a}:destination:b}:tenant" reads as destination
// "b}:tenant" of tenant "a" and as tenant "a}:destination:b"); the record's
// content decides (see Resolve).
func V1Parses(prefix, key string) []Key {
	rest, ok := strings.CutPrefix(key, prefix+"tenant:{")
	if !ok {
		return nil
	}
	var out []Key
	for i := 0; ; {
		j := strings.Index(rest[i:], "}:")
		if j < 0 {
			return out
		}
		end := i + j
		i = end + 1
		if end == 0 {
			continue
		}
		tid, suffix := rest[:end], rest[end+2:]
		switch {
		case suffix == "tenant":
			out = append(out, Key{Kind: KindTenant, TenantID: tid})
		case suffix == "destinations":
			out = append(out, Key{Kind: KindSummary, TenantID: tid})
		case strings.HasPrefix(suffix, "destination:") && len(suffix) > len("destination:"):
			out = append(out, Key{Kind: KindDestination, TenantID: tid, DestID: suffix[len("destination:"):]})
		}
	}
}

// ParseV1 parses a hash-tagged key when its name allows one reading only
// (see V1Parses); ok is false for anything else, including v0 keys.
func ParseV1(prefix, key string) (Key, bool) {
	ps := V1Parses(prefix, key)
	if len(ps) != 1 {
		return Key{}, false
	}
	return ps[0], true
}

// IsV0Candidate says whether key may be a legacy entity key: it starts with
// "tenant:" (v0 keys were never prefixed) and an id follows. A legacy id
// may start with '{': such a name may also read as hash-tagged (see
// Resolve).
func IsV0Candidate(key string) bool {
	rest, ok := strings.CutPrefix(key, "tenant:")
	return ok && rest != ""
}

// V0Parses lists every way key can be read as a v0 key, from its name
// alone. Ids may contain ':', so "tenant:a:destination:b:destination:c" has
// two destination readings and also a tenant reading (id
// "a:destination:b:destination:c"); the record's content decides (see
// ClassifyV0).
func V0Parses(key string) []Key {
	rest, ok := strings.CutPrefix(key, "tenant:")
	if !ok || rest == "" {
		return nil
	}
	out := []Key{{Kind: KindTenant, TenantID: rest}}
	if tid, ok := strings.CutSuffix(rest, ":destinations"); ok && tid != "" {
		out = append(out, Key{Kind: KindSummary, TenantID: tid})
	}
	for i := 0; ; {
		j := strings.Index(rest[i:], ":destination:")
		if j < 0 {
			break
		}
		at := i + j
		tid, did := rest[:at], rest[at+len(":destination:"):]
		if tid != "" && did != "" {
			out = append(out, Key{Kind: KindDestination, TenantID: tid, DestID: did})
		}
		i = at + 1
	}
	return out
}

// ErrUnclassifiable is returned for a v0 hash whose name and content do not
// say what it is.
var ErrUnclassifiable = errors.New("cannot tell what this record is")

// ClassifyV0 decides what a v0 hash is from its name and content:
//   - a record holding id is a tenant when id is the whole rest of the key,
//     a destination when id is what follows one ":destination:" of the key
//     (so "tenant:a:destination:b:destination:c" with id "c" is destination
//     c of tenant "a:destination:b"); the two can never both hold, as the
//     rest of a destination key is longer than its destination id;
//   - a summary's every value is a JSON object whose "id" is its field name
//     (checked before the soft-delete rule: a summary may list a
//     destination whose id is "deleted_at");
//   - a record without id that holds deleted_at is a soft-deleted tenant or
//     destination (the storage spec's soft delete keeps only deleted_at):
//     the name decides, a ":destination:" reading winning over the tenant
//     reading, the leftmost split first (tenant ids stay short, as Outpost's
//     are). Such a record is deleted and expires within 7 days, so an
//     ambiguous name costs at most a copy, under another name, that expires
//     with it.
//
// Anything else is an error wrapping ErrUnclassifiable that says why: the
// caller reports it per key and copies nothing.
func ClassifyV0(key string, fields map[string]string) (Key, error) {
	ps := V0Parses(key)
	if len(ps) == 0 {
		return Key{}, ErrUnclassifiable
	}
	id, hasID := fields["id"]
	if hasID {
		if id == ps[0].TenantID {
			return ps[0], nil
		}
		for _, p := range ps {
			if p.Kind == KindDestination && p.DestID == id {
				return p, nil
			}
		}
	}
	var summary *Key
	for i := range ps {
		if ps[i].Kind == KindSummary {
			summary = &ps[i]
		}
	}
	summaryErr := errors.New("the key is not named like a summary")
	if summary != nil {
		if summaryErr = checkSummary(fields); summaryErr == nil {
			return *summary, nil
		}
	}
	if _, deleted := fields["deleted_at"]; deleted && !hasID {
		for _, p := range ps {
			if p.Kind == KindDestination {
				return p, nil
			}
		}
		// No destination reading: a tenant (also when its id ends in
		// ":destinations", as a summary is never soft-deleted).
		return ps[0], nil
	}
	switch {
	case summary != nil:
		return Key{}, fmt.Errorf("%w: named like a summary but %v", ErrUnclassifiable, summaryErr)
	case hasID:
		return Key{}, fmt.Errorf("%w: id %q matches no reading of the key", ErrUnclassifiable, id)
	}
	return Key{}, fmt.Errorf("%w: it holds neither id nor deleted_at", ErrUnclassifiable)
}

// checkSummary says why fields are not a destination summary, nil when
// every value is a JSON object whose "id" is its field name. Fields are
// checked in name order so that the error is the same on every run.
func checkSummary(fields map[string]string) error {
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		v := fields[f]
		var d struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(v), &d); err != nil {
			return fmt.Errorf("field %q is not a JSON object: %v", f, err)
		}
		if d.ID != f {
			return fmt.Errorf("field %q holds destination id %q", f, d.ID)
		}
	}
	return nil
}
