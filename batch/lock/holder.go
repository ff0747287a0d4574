package lock

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/outpost-migrate/outpost/report"
)

// valueOwner marks a lock value written by this tool. Anything else in the
// key (Outpost's bare random token, or JSON without the mark) is foreign.
const valueOwner = "outpost-migrate"

// timeFormat stamps started_at: RFC 3339 in UTC with milliseconds.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// value is the JSON stored in the lock key: the holder, flattened, plus the
// owner mark and a nonce that makes each acquisition attempt's value unique
// (so an attempt can recognise its own write after a retried command).
type value struct {
	Owner string `json:"owner"`
	report.Holder
	Nonce string `json:"nonce"`
}

// tokenSentinel stands for the fencing token in a value template until the
// acquire script, which draws the token, splices the real one in.
const tokenSentinel int64 = -7318295513750184621

// template renders the value for h with the token left out: the script
// stores pre + token + post.
func template(h report.Holder, nonce string) (pre, post string, err error) {
	h.Token = tokenSentinel
	b, err := json.Marshal(value{Owner: valueOwner, Holder: h, Nonce: nonce})
	if err != nil {
		return "", "", fmt.Errorf("lock: encoding the holder: %w", err)
	}
	// Strings in the JSON have their quotes escaped, so the mark can only be
	// the token field itself.
	const field = `"token":`
	mark := fmt.Sprintf("%s%d", field, tokenSentinel)
	i := strings.Index(string(b), mark)
	if i < 0 {
		return "", "", fmt.Errorf("lock: token missing from the encoded holder")
	}
	return string(b[:i+len(field)]), string(b[i+len(mark):]), nil
}

// parseValue reads a lock value. ok is false for a value this tool did not
// write.
func parseValue(s string) (v value, ok bool) {
	if !strings.HasPrefix(s, "{") {
		return value{}, false
	}
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return value{}, false
	}
	return v, v.Owner == valueOwner && v.RunID != ""
}

// Environment lookups, replaceable in tests.
var (
	getenv   = os.Getenv
	hostname = os.Hostname
	readFile = os.ReadFile
)

// k8sNamespaceFile is where a pod with a service account finds its namespace.
const k8sNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// fillHolder completes what the caller left empty: host, pid, start time
// (now) and where the process runs, from the environment Nomad and
// Kubernetes give it. POD_NAME and POD_NAMESPACE are what a pod spec sets
// with the downward API; without them, in a pod (KUBERNETES_SERVICE_HOST is
// set) HOSTNAME is the pod name and the service account says the namespace.
func fillHolder(h report.Holder, now time.Time) report.Holder {
	if h.Host == "" {
		if n, err := hostname(); err == nil {
			h.Host = n
		} else {
			h.Host = "unknown"
		}
	}
	if h.PID == 0 {
		h.PID = os.Getpid()
	}
	if h.StartedAt == "" {
		h.StartedAt = now.UTC().Format(timeFormat)
	}
	if h.NomadAllocID == "" {
		h.NomadAllocID = getenv("NOMAD_ALLOC_ID")
	}
	if h.NomadJobID == "" {
		h.NomadJobID = getenv("NOMAD_JOB_ID")
	}
	inK8s := getenv("KUBERNETES_SERVICE_HOST") != ""
	if h.K8sPod == "" {
		h.K8sPod = getenv("POD_NAME")
		if h.K8sPod == "" && inK8s {
			h.K8sPod = getenv("HOSTNAME")
		}
	}
	if h.K8sNamespace == "" {
		h.K8sNamespace = getenv("POD_NAMESPACE")
		if h.K8sNamespace == "" && inK8s {
			if b, err := readFile(k8sNamespaceFile); err == nil {
				h.K8sNamespace = strings.TrimSpace(string(b))
			}
		}
	}
	return h
}

func newNonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// describeHolder is "run r-… (apply) on host h pid 1 [nomad alloc …] since
// …", for messages.
func describeHolder(h report.Holder) string {
	var b strings.Builder
	fmt.Fprintf(&b, "run %s", h.RunID)
	if h.Command != "" {
		fmt.Fprintf(&b, " (%s", h.Command)
		if h.ToolVersion != "" {
			fmt.Fprintf(&b, ", version %s", h.ToolVersion)
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, " on host %s pid %d", h.Host, h.PID)
	switch {
	case h.NomadAllocID != "":
		fmt.Fprintf(&b, " (nomad job %s alloc %s)", h.NomadJobID, h.NomadAllocID)
	case h.K8sPod != "":
		fmt.Fprintf(&b, " (pod %s/%s)", h.K8sNamespace, h.K8sPod)
	}
	if h.StartedAt != "" {
		fmt.Fprintf(&b, " since %s", h.StartedAt)
	}
	return b.String()
}
