package lock

import (
	"strings"

	"github.com/outpost-migrate/outpost/report"
)

// KeySuffix is the lock key without the deployment prefix, as Outpost names it.
const KeySuffix = ".outpost:migration_lock"

// Key is the lock key for deployment prefix P ("<DEPLOYMENT_ID>:" or "").
func Key(prefix string) string { return prefix + KeySuffix }

// SlotKey names a key that lives in lockKey's hash slot, so that one script
// may read the lock and write it, also on Redis Cluster. For every lock key
// Key can make without braces in the prefix it is "{" + lockKey + "}:" +
// suffix. A lock key that already carries a hash tag keeps it: the result is
// lockKey + ":" + suffix, whose tag is the same.
func SlotKey(lockKey, suffix string) string {
	if _, ok := hashTag(lockKey); ok {
		return lockKey + ":" + suffix
	}
	return "{" + lockKey + "}:" + suffix
}

// checkKey refuses a lock key whose companions cannot share its slot: one
// with a "}" but no hash tag (a DEPLOYMENT_ID such as "a}b").
func checkKey(lockKey string) error {
	if lockKey == "" {
		return report.E(report.CodeInternal, "lock: no lock key given")
	}
	if Slot(SlotKey(lockKey, "fence")) != Slot(lockKey) {
		return report.E(report.CodeConfig,
			"the lock key %q contains braces that stop its companion keys from sharing its Redis Cluster hash slot; use a deployment id without '{' or '}'", lockKey).
			With("key", lockKey)
	}
	return nil
}

// checkSlot refuses a fenced write to a key outside the lock's slot: the
// script would fail with CROSSSLOT on a cluster, and on a standalone server
// the mistake would go unnoticed until then.
func checkSlot(lockKey, key string) error {
	if Slot(key) != Slot(lockKey) {
		return report.E(report.CodeInternal,
			"lock: fenced write to %q, which is not in the hash slot of the lock %q (name it with lock.SlotKey)", key, lockKey)
	}
	return nil
}

// Slot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of the key, or
// of its hash tag (the text between the first "{" and the first "}" after
// it, when not empty), modulo 16384.
func Slot(key string) int {
	if tag, ok := hashTag(key); ok {
		key = tag
	}
	return int(crc16(key) & 16383)
}

func hashTag(key string) (string, bool) {
	s := strings.IndexByte(key, '{')
	if s < 0 {
		return "", false
	}
	e := strings.IndexByte(key[s+1:], '}')
	if e <= 0 {
		return "", false
	}
	return key[s+1 : s+1+e], true
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial 0), the one Redis
// Cluster uses.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
