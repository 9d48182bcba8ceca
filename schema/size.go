package schema

import (
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
)

// QuantityKind says how a size is resolved against its container.
type QuantityKind int

// Kinds of Quantity.
const (
	// Absolute is a fixed number of bytes.
	Absolute QuantityKind = iota
	// Percent is a share of the space its container has for volumes.
	Percent
	// Remaining takes whatever the other volumes of the container leave.
	Remaining
)

// Quantity is a parsed size.
type Quantity struct {
	Kind QuantityKind
	// Bytes is set for Absolute sizes.
	Bytes uint64
	// Pct is set for Percent sizes, 0 <= Pct <= 100 (a 0% volume is skipped with a warning).
	Pct float64
}

// Common byte multiples.
const (
	KiB uint64 = 1 << 10
	MiB uint64 = 1 << 20
	GiB uint64 = 1 << 30
	TiB uint64 = 1 << 40
)

// SectorUnit is the size of the "s" unit: 512-byte sectors, whatever the disk's logical
// sector size, so that a document means the same bytes on every disk.
const SectorUnit = 512

// maxBytes bounds sizes well below overflow of sector arithmetic (8 EiB).
const maxBytes = uint64(1) << 62

var sizeRE = regexp.MustCompile(`^([-+]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z%]*)$`)

// expRE matches a JSON number written with an exponent.
var expRE = regexp.MustCompile(`^[-+]?[0-9.]+[eE][-+]?[0-9]+$`)

var units = map[string]uint64{
	"b": 1, "s": SectorUnit,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15,
	"kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB, "pib": 1 << 50,
}

// ambiguous single-letter units: parted reads "M" as MB, sgdisk as MiB. Refusing them
// costs a user one edit; guessing wrong costs a layout.
var ambiguous = map[string]bool{"k": true, "m": true, "g": true, "t": true, "p": true}

// ParseSize parses a size literal: a bare number (MiB), a number with a unit, "N%", or
// "remaining". isNumber says the literal was a JSON number, which is always MiB.
func ParseSize(raw string, isNumber bool) (Quantity, error) {
	s := strings.TrimSpace(raw)
	if !isNumber && strings.EqualFold(s, "remaining") {
		return Quantity{Kind: Remaining}, nil
	}
	if isNumber && expRE.MatchString(s) {
		// json.Number keeps exponents ("1e3"), which sizeRE does not match: say why.
		return Quantity{}, fmt.Errorf("%s is not a plain number of MiB", raw)
	}
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return Quantity{}, fmt.Errorf("%s is not a size (want e.g. 512, \"10GiB\", \"20%%\", \"remaining\")", quoteLit(raw, isNumber))
	}
	if m[1] == "-" {
		return Quantity{}, fmt.Errorf("%s is negative", quoteLit(raw, isNumber))
	}
	if isNumber && m[3] != "" {
		// A JSON number is MiB by definition; a caller passing "5%" as a number is wrong.
		return Quantity{}, fmt.Errorf("%s is not a plain number of MiB", raw)
	}
	val, ok := new(big.Rat).SetString(m[2])
	if !ok {
		return Quantity{}, fmt.Errorf("%s is not a number", quoteLit(raw, isNumber))
	}
	unit := strings.ToLower(m[3])
	if unit == "%" {
		pct, _ := val.Float64()
		if pct > 100 {
			return Quantity{}, fmt.Errorf("%s exceeds 100%%", quoteLit(raw, isNumber))
		}
		return Quantity{Kind: Percent, Pct: pct}, nil
	}
	if ambiguous[unit] {
		return Quantity{}, fmt.Errorf("%s: unit %q is ambiguous, write %siB or %sB", quoteLit(raw, isNumber), m[3], strings.ToUpper(unit), strings.ToUpper(unit))
	}
	mult, known := MiB, unit == ""
	if !known {
		mult, known = units[unit]
	}
	if !known {
		return Quantity{}, fmt.Errorf("%s: unknown unit %q (use B, s, KB, MB, GB, TB, KiB, MiB, GiB, TiB or %%)", quoteLit(raw, isNumber), m[3])
	}
	bytes := new(big.Rat).Mul(val, new(big.Rat).SetInt(new(big.Int).SetUint64(mult)))
	if (unit == "s" || unit == "b") && !val.IsInt() {
		return Quantity{}, fmt.Errorf("%s: a count of %s must be whole", quoteLit(raw, isNumber), map[string]string{"s": "sectors", "b": "bytes"}[unit])
	}
	// Round a fractional byte count up: a size is a minimum the user needs.
	n := new(big.Int).Quo(bytes.Num(), bytes.Denom())
	if !bytes.IsInt() {
		n.Add(n, big.NewInt(1))
	}
	if !n.IsUint64() || n.Uint64() > maxBytes {
		return Quantity{}, fmt.Errorf("%s is too large", quoteLit(raw, isNumber))
	}
	return Quantity{Kind: Absolute, Bytes: n.Uint64()}, nil
}

// PercentOf returns q's percentage of n, rounded down, computed exactly: 32.3% of 1000
// is 323, where float64 arithmetic lands a hair below and would round to 322.
func (q Quantity) PercentOf(n uint64) uint64 {
	r := pctRat(q.Pct)
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).SetUint64(n)))
	r.Quo(r, big.NewRat(100, 1))
	return new(big.Int).Quo(r.Num(), r.Denom()).Uint64()
}

// pctRat recovers the decimal the user wrote from the float64 that parsed it: the
// shortest representation of a float64 is exact for decimals of up to 15 digits.
func pctRat(pct float64) *big.Rat {
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(pct, 'g', -1, 64))
	if !ok {
		r = new(big.Rat).SetFloat64(pct)
	}
	return r
}

func quoteLit(raw string, isNumber bool) string {
	if isNumber {
		return raw
	}
	return fmt.Sprintf("%q", raw)
}

// String renders a quantity for people: "remaining", "25%", or a binary size.
func (q Quantity) String() string {
	switch q.Kind {
	case Remaining:
		return "remaining"
	case Percent:
		return fmt.Sprintf("%g%%", q.Pct)
	}
	return HumanBytes(q.Bytes)
}

// HumanBytes renders a byte count in the largest binary unit that keeps it readable:
// whole units exactly ("100 MiB", "512 B"), others with two decimals ("1.50 GiB").
func HumanBytes(b uint64) string {
	type u struct {
		n    uint64
		name string
	}
	for _, x := range []u{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if b >= x.n {
			if b%x.n == 0 {
				return fmt.Sprintf("%d %s", b/x.n, x.name)
			}
			return fmt.Sprintf("%.2f %s", float64(b)/float64(x.n), x.name)
		}
	}
	return fmt.Sprintf("%d B", b)
}
