package deb

import "strings"

// VersionLess orders kernel and package version strings (e.g. "6.1.0-56-cloud-amd64")
// for choosing the newest: runs of digits compare as numbers, ignoring leading zeros, so
// 6.1.0-56 sorts after 6.1.0-9 and 6.12 after 6.1; runs of other characters compare
// bytewise; when one string is a prefix of the other in this sense, the shorter sorts
// first. It is not dpkg's full ordering (no epochs, no "~"), which kernel ABI names do
// not need.
func VersionLess(a, b string) bool {
	for a != "" && b != "" {
		ra, rb := leadingRun(a), leadingRun(b)
		if ra != rb {
			if !isDigit(ra[0]) || !isDigit(rb[0]) {
				return ra < rb
			}
			na, nb := strings.TrimLeft(ra, "0"), strings.TrimLeft(rb, "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
		}
		a, b = a[len(ra):], b[len(rb):]
	}
	return len(a) < len(b)
}

// leadingRun returns the longest prefix of s made only of digits or only of non-digits.
func leadingRun(s string) string {
	d := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == d {
		i++
	}
	return s[:i]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
