package partition

import (
	"strings"
)

// CompareVersions compares the versions two image names or file names embed, so that an
// update to an older image is caught: it returns -1 when a is older than b, +1 when a is
// newer, and 0 when they are the same or cannot be compared. Both are cut into runs of
// digits and runs of other characters; runs of digits compare as numbers ("Debian 12.4"
// is older than "Debian 12.10", "v09" equals "v9"), other runs must be equal, ignoring
// case, or the names are of different things and cannot be compared. When one name is
// the other followed by more runs, the longer one is newer ("Debian 12" < "Debian 12.1").
func CompareVersions(a, b string) int {
	ra, rb := versionRuns(a), versionRuns(b)
	for i := 0; i < len(ra) && i < len(rb); i++ {
		x, y := ra[i], rb[i]
		xd, yd := isDigits(x), isDigits(y)
		switch {
		case xd && yd:
			if c := compareNumbers(x, y); c != 0 {
				return c
			}
		case xd != yd || !strings.EqualFold(x, y):
			return 0
		}
	}
	switch {
	case len(ra) < len(rb):
		return -1
	case len(ra) > len(rb):
		return 1
	}
	return 0
}

// versionRuns cuts s into runs of digits and runs of other characters.
func versionRuns(s string) []string {
	var runs []string
	start := 0
	for i := 1; i <= len(s); i++ {
		if i == len(s) || isDigit(s[i]) != isDigit(s[start]) {
			runs = append(runs, s[start:i])
			start = i
		}
	}
	return runs
}

// compareNumbers compares two runs of decimal digits by value, however long.
func compareNumbers(x, y string) int {
	x, y = strings.TrimLeft(x, "0"), strings.TrimLeft(y, "0")
	switch {
	case len(x) != len(y):
		if len(x) < len(y) {
			return -1
		}
		return 1
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// isDigits reports whether the run is of digits.
func isDigits(run string) bool { return run != "" && isDigit(run[0]) }

// isDigit reports whether c is an ASCII decimal digit.
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
