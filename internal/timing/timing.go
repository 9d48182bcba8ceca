// Package timing summarises repeated measurements of one operation, for the tests that
// compare two ways of doing it (they report a median with every run, since the machines
// they run on are shared and noisy).
package timing

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Median returns the median of ds (the mean of the middle two for an even count; 0 for
// none), leaving ds as it is.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Seconds lists ds in seconds with one decimal, in run order: "3.5, 4.1, 9.3 s".
func Seconds(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.1f", d.Seconds())
	}
	return strings.Join(parts, ", ") + " s"
}
