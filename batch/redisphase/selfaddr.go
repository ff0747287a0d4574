package redisphase

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ownAddrs returns the local TCP endpoints ("ip:port") of this process's
// own sockets, read from /proc (Linux): the connections of this run, which
// the server's CLIENT LIST shows by these addresses. Elsewhere, or when
// /proc cannot be read, it is empty and this run's connections are listed
// as others'.
func ownAddrs() map[string]bool {
	out := map[string]bool{}
	inodes := map[string]bool{}
	fds, _ := filepath.Glob("/proc/self/fd/*")
	for _, fd := range fds {
		l, err := os.Readlink(fd)
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	for _, file := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !inodes[f[9]] {
				continue
			}
			if a, ok := procAddr(f[1]); ok {
				out[a] = true
			}
		}
	}
	return out
}

// procAddr decodes /proc/net/tcp's "0100007F:1F90" (the address as the
// kernel stores it: 32-bit words in host order, little-endian here).
func procAddr(s string) (string, bool) {
	h, p, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(h)
	port, perr := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || perr != nil || (len(raw) != 4 && len(raw) != 16) {
		return "", false
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(port)), true
}
