package schema

import "strings"

// IsRsyncSource reports whether an image source names a tree that an rsync daemon
// serves: "rsync://HOST[:PORT]/module/path/", or "HOST::module/path/" (also
// "[IPv6]::module" and "USER@HOST::module"), which is rsync's own daemon syntax: a
// double colon before the first slash. Any other source is a stream (a URL or a path).
func IsRsyncSource(src string) bool {
	if len(src) >= len("rsync://") && strings.EqualFold(src[:len("rsync://")], "rsync://") {
		return true
	}
	_, _, ok := CutRsyncHost(src)
	return ok
}

// CutRsyncHost splits "HOST::rest" into HOST and rest; ok is false when src is not of
// that form: no "::", a slash before it, or an empty host. A bracketed IPv6 host keeps
// its brackets.
func CutRsyncHost(src string) (host, rest string, ok bool) {
	at := 0
	if strings.HasPrefix(src, "[") {
		end := strings.Index(src, "]")
		if end < 0 {
			return "", "", false
		}
		at = end + 1
		if !strings.HasPrefix(src[at:], "::") {
			return "", "", false
		}
	} else if i := strings.Index(src, "::"); i > 0 {
		at = i
	} else {
		return "", "", false
	}
	host = src[:at]
	if strings.Contains(host, "/") {
		return "", "", false
	}
	return host, src[at+2:], true
}
