package report

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MarshalJSON writes an issue whose key is not valid UTF-8 without losing
// it: JSON carries text only and encoding/json would turn each invalid byte
// into U+FFFD, so the report would not name the key to fix (issue #22).
// Then "key" is the name with each invalid byte written \xNN and each
// backslash doubled (as redis-cli prints it), and "key_base64" holds the
// exact bytes.
func (i Issue) MarshalJSON() ([]byte, error) {
	type plain Issue
	if utf8.ValidString(i.Key) {
		return json.Marshal(plain(i))
	}
	p := plain(i)
	p.Key = EscapeKey(i.Key)
	return json.Marshal(struct {
		plain
		KeyBase64 string `json:"key_base64"`
	}{p, base64.StdEncoding.EncodeToString([]byte(i.Key))})
}

// EscapeKey spells a key name as text: valid UTF-8 as is, each byte that
// is not part of valid UTF-8 as \xNN, a backslash as \\. It is lossless
// and the identity on names that are valid UTF-8 without backslashes.
func EscapeKey(k string) string {
	var b strings.Builder
	for i := 0; i < len(k); {
		r, n := utf8.DecodeRuneInString(k[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, "\\x%02x", k[i])
		case r == '\\':
			b.WriteString("\\\\")
		default:
			b.WriteString(k[i : i+n])
		}
		i += n
	}
	return b.String()
}
