package deb

import (
	"testing"

	"github.com/provisioner/provisioner/internal/deb/debtest"
)

// debtest writes the ar magic and header length out rather than importing them: they
// must be the ones this reader expects.
func TestDebtestMatchesReader(t *testing.T) {
	b := debtest.Ar(t, false, debtest.Member{Name: "x"})
	if string(b[:len(arMagic)]) != arMagic || len(b) != len(arMagic)+arHeaderLen {
		t.Fatalf("debtest.Ar wrote %q, want the magic %q and one %d-byte header", b, arMagic, arHeaderLen)
	}
}
