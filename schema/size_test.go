package schema_test

import (
	"strings"
	"testing"

	"github.com/provisioner/provisioner/schema"
)

const (
	kib = uint64(1) << 10
	mib = uint64(1) << 20
	gib = uint64(1) << 30
	tib = uint64(1) << 40
	pib = uint64(1) << 50
)

func abs(n uint64) schema.Quantity { return schema.Quantity{Kind: schema.Absolute, Bytes: n} }
func pct(p float64) schema.Quantity {
	return schema.Quantity{Kind: schema.Percent, Pct: p}
}

var remaining = schema.Quantity{Kind: schema.Remaining}

func TestParseSizeAccepts(t *testing.T) {
	tests := []struct {
		name     string
		raw      string
		isNumber bool
		want     schema.Quantity
	}{
		// A bare number is MiB, whether a JSON number or a numeric string.
		{"JSON number is MiB", "4000", true, abs(4000 * mib)},
		{"numeric string is MiB", "4000", false, abs(4000 * mib)},
		{"fractional JSON number is MiB", "0.5", true, abs(mib / 2)},
		{"numeric string with spaces around", "  512  ", false, abs(512 * mib)},
		{"leading dot", ".5GiB", false, abs(gib / 2)},
		{"trailing dot", "5.", false, abs(5 * mib)},
		{"zero", "0", true, abs(0)},

		// SI units are powers of 1000, exactly.
		{"KB", "1KB", false, abs(1000)},
		{"MB with a space", "100 MB", false, abs(100000000)},
		{"GB fractional is exact", "1.1GB", false, abs(1100000000)},
		{"TB", "2TB", false, abs(2000000000000)},
		{"PB", "1PB", false, abs(1000000000000000)},
		{"SI units are case-insensitive", "15000 mb", false, abs(15000000000)},
		{"Bareon's 15000 MB disk", "15000 MB", false, abs(15000000000)},

		// Binary units.
		{"KiB", "4KiB", false, abs(4 * kib)},
		{"MiB", "300 MiB", false, abs(300 * mib)},
		{"GiB", "20GiB", false, abs(20 * gib)},
		{"GiB fractional", "1.5 GiB", false, abs(gib + gib/2)},
		{"TiB", "3 TiB", false, abs(3 * tib)},
		{"PiB", "1PiB", false, abs(pib)},
		{"binary units are case-insensitive", "2gib", false, abs(2 * gib)},

		// Sectors are always 512 bytes; B is bytes.
		{"sectors", "2048s", false, abs(2048 * 512)},
		{"sectors with a space", "2048 s", false, abs(2048 * 512)},
		{"bytes", "4096B", false, abs(4096)},
		{"fraction of sectors that is whole bytes", "1.0s", false, abs(512)},

		// A fraction of a byte is rounded up: a size is a minimum.
		{"fractional KB rounds up", "0.0015KB", false, abs(2)},
		{"fractional KiB rounds up", "1.1KiB", false, abs(1127)},
		{"fractional JSON number rounds up", "0.3", true, abs(314573)},
		{"fractional MiB string rounds up", "0.0000001", false, abs(1)},
		{"exact fraction is not rounded", "0.25KiB", false, abs(256)},

		// Percentages.
		{"percent", "25%", false, pct(25)},
		{"percent with a space", "12.5 %", false, pct(12.5)},
		{"100 percent", "100%", false, pct(100)},
		{"fractional percent", "0.5%", false, pct(0.5)},

		// remaining, in any case.
		{"remaining", "remaining", false, remaining},
		{"Remaining", "Remaining", false, remaining},
		{"REMAINING", "REMAINING", false, remaining},
		{"remaining with spaces", " remaining ", false, remaining},

		// The largest size accepted: 2^62 bytes.
		{"largest size", "4194304 TiB", false, abs(1 << 62)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := schema.ParseSize(tt.raw, tt.isNumber)
			if err != nil {
				t.Fatalf("ParseSize(%q, %v): unexpected error: %v", tt.raw, tt.isNumber, err)
			}
			if got != tt.want {
				t.Errorf("ParseSize(%q, %v) = %+v, want %+v", tt.raw, tt.isNumber, got, tt.want)
			}
		})
	}
}

func TestParseSizeRejects(t *testing.T) {
	tests := []struct {
		name     string
		raw      string
		isNumber bool
		exact    string   // the whole message, when set
		contains []string // substrings of the message
	}{
		{name: "percent over 100", raw: "101%", exact: `"101%" exceeds 100%`},
		{name: "fractional percent over 100", raw: "100.5%", exact: `"100.5%" exceeds 100%`},
		{name: "negative numeric string", raw: "-5", exact: `"-5" is negative`},
		{name: "negative with a unit", raw: "-5 GiB", exact: `"-5 GiB" is negative`},
		{name: "negative JSON number", raw: "-5", isNumber: true, exact: `-5 is negative`},
		{name: "negative percent", raw: "-5%", exact: `"-5%" is negative`},
		{name: "ambiguous M", raw: "10M", exact: `"10M": unit "M" is ambiguous, write MiB or MB`},
		{name: "ambiguous G with a space", raw: "10 G", exact: `"10 G": unit "G" is ambiguous, write GiB or GB`},
		{name: "ambiguous lower-case k", raw: "10k", contains: []string{`unit "k" is ambiguous`, "KiB or KB"}},
		{name: "ambiguous T", raw: "1T", contains: []string{`unit "T" is ambiguous`, "TiB or TB"}},
		{name: "unknown unit", raw: "10 XB", contains: []string{`"10 XB": unknown unit "XB"`, "KiB"}},
		{name: "unknown unit EiB", raw: "1EiB", contains: []string{`unknown unit "EiB"`}},
		{name: "fractional sectors", raw: "1.5s", exact: `"1.5s": a count of sectors must be whole`},
		{name: "fractional bytes", raw: "10.5B", exact: `"10.5B": a count of bytes must be whole`},
		{name: "JSON number with an exponent", raw: "1e3", isNumber: true, exact: `1e3 is not a plain number of MiB`},
		{name: "JSON number with a negative exponent", raw: "5E-1", isNumber: true, exact: `5E-1 is not a plain number of MiB`},
		{name: "unit on a JSON number", raw: "5%", isNumber: true, exact: `5% is not a plain number of MiB`},
		{name: "remaining as a JSON number", raw: "remaining", isNumber: true, contains: []string{"remaining is not a size"}},
		{name: "too large with a unit", raw: "99999999999 TB", exact: `"99999999999 TB" is too large`},
		{name: "one byte over the largest size", raw: "4611686018427387905B", exact: `"4611686018427387905B" is too large`},
		{name: "too large JSON number", raw: "99999999999999999999", isNumber: true, exact: `99999999999999999999 is too large`},
		{name: "empty", raw: "", contains: []string{`"" is not a size`}},
		{name: "words", raw: "lots", contains: []string{`"lots" is not a size`, `"remaining"`}},
		{name: "two numbers", raw: "1 2", contains: []string{"is not a size"}},
		{name: "unit before the number", raw: "GiB 5", contains: []string{"is not a size"}},
		{name: "exponent in a string", raw: "1e3", contains: []string{`"1e3"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := schema.ParseSize(tt.raw, tt.isNumber)
			if err == nil {
				t.Fatalf("ParseSize(%q, %v) = %+v, want an error", tt.raw, tt.isNumber, q)
			}
			msg := err.Error()
			if tt.exact != "" && msg != tt.exact {
				t.Errorf("ParseSize(%q, %v) error = %q, want %q", tt.raw, tt.isNumber, msg, tt.exact)
			}
			for _, s := range tt.contains {
				if !strings.Contains(msg, s) {
					t.Errorf("ParseSize(%q, %v) error = %q, want it to contain %q", tt.raw, tt.isNumber, msg, s)
				}
			}
		})
	}
}

func TestQuantityString(t *testing.T) {
	tests := []struct {
		q    schema.Quantity
		want string
	}{
		{remaining, "remaining"},
		{pct(25), "25%"},
		{pct(12.5), "12.5%"},
		{abs(100 * mib), "100 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.q.String(); got != tt.want {
				t.Errorf("%+v.String() = %q, want %q", tt.q, got, tt.want)
			}
		})
	}
}

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		b    uint64
		want string
	}{
		{0, "0 B"},
		{1, "1 B"},
		{512, "512 B"},
		{1023, "1023 B"},
		{kib, "1 KiB"},
		{4 * kib, "4 KiB"},
		{mib, "1 MiB"},
		{100 * mib, "100 MiB"},
		{1023 * mib, "1023 MiB"},
		{gib, "1 GiB"},
		{gib + gib/4, "1.25 GiB"},
		{tib, "1 TiB"},
		{tib + 3*tib/4, "1.75 TiB"},
		{1024 * tib, "1024 TiB"},
		{100000000, "95.37 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := schema.HumanBytes(tt.b); got != tt.want {
				t.Errorf("HumanBytes(%d) = %q, want %q", tt.b, got, tt.want)
			}
		})
	}
}

// TestParseSizeRoundTrip checks that a size rendered by HumanBytes (when exact) parses
// back to the same number of bytes.
func TestParseSizeRoundTrip(t *testing.T) {
	for _, b := range []uint64{512, kib, 3 * kib, mib, 300 * mib, gib, 20 * gib, tib, 7 * tib} {
		s := schema.HumanBytes(b)
		t.Run(s, func(t *testing.T) {
			q, err := schema.ParseSize(s, false)
			if err != nil {
				t.Fatalf("ParseSize(%q): %v", s, err)
			}
			if q != abs(b) {
				t.Errorf("ParseSize(%q) = %+v, want %d bytes", s, q, b)
			}
		})
	}
}
