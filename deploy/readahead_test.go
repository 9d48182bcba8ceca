package deploy

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func TestReadAheadKeepsBytesInOrder(t *testing.T) {
	data := make([]byte, 5<<20+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, size := range []int{1, 4096, 1 << 20, 8 << 20} {
		ra := newReadAhead(iotest.HalfReader(bytes.NewReader(data)), size, 3)
		got, err := io.ReadAll(iotest.OneByteReader(io.LimitReader(ra, 100)))
		if err != nil || !bytes.Equal(got, data[:100]) {
			t.Fatalf("chunk %d, first bytes: %v", size, err)
		}
		rest, err := io.ReadAll(ra)
		if err != nil || !bytes.Equal(rest, data[100:]) {
			t.Fatalf("chunk %d: %d bytes, %v", size, len(rest), err)
		}
		ra.Close()
	}
}

func TestReadAheadPassesTheErrorAfterTheBytes(t *testing.T) {
	boom := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(bytes.Repeat([]byte("x"), 3000)), iotest.ErrReader(boom))
	ra := newReadAhead(r, 1024, 2)
	defer ra.Close()
	got, err := io.ReadAll(ra)
	if len(got) != 3000 || !errors.Is(err, boom) {
		t.Fatalf("%d bytes, %v; want 3000 then %v", len(got), err, boom)
	}
}

func TestReadAheadCloseStopsEarly(t *testing.T) {
	// An endless source: Close must return without reading it to the end.
	ra := newReadAhead(zeroes{}, 1<<16, 4)
	buf := make([]byte, 10)
	if _, err := ra.Read(buf); err != nil {
		t.Fatal(err)
	}
	ra.Close()
	ra.Close() // twice is fine
}

type zeroes struct{}

func (zeroes) Read(p []byte) (int, error) { clear(p); return len(p), nil }
