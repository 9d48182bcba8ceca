package engine

import (
	"strings"
	"sync"
	"testing"
)

func TestTextEvents(t *testing.T) {
	var b strings.Builder
	render := TextEvents(&b)
	for _, ev := range []Event{
		{Phase: PhasePlan, Message: "resolving and probing the disks, planning"},
		{Phase: PhasePartition, Message: `applying partitions_policy "clean": 2 steps`},
		{Step: 1, Steps: 2, Message: "run: sgdisk --zap-all /dev/loop0"},
		{Step: 2, Steps: 2, Message: "run: mke2fs -t ext4 /dev/loop0p2"},
		{Phase: PhaseImages, Image: "a", Done: 10, Total: 100},
		{},
	} {
		render(ev)
	}
	want := "resolving and probing the disks, planning\n" +
		"applying partitions_policy \"clean\": 2 steps\n" +
		"[1/2] run: sgdisk --zap-all /dev/loop0\n" +
		"[2/2] run: mke2fs -t ext4 /dev/loop0p2\n"
	if b.String() != want {
		t.Errorf("rendered:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestTextEventsWholeLines renders from many goroutines at once, as concurrent images
// do: every line must come out whole.
func TestTextEventsWholeLines(t *testing.T) {
	var b strings.Builder
	render := TextEvents(&b)
	line := strings.Repeat("x", 200)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				render(Event{Message: line})
			}
		}()
	}
	wg.Wait()
	for i, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if l != line {
			t.Fatalf("line %d is mangled: %q", i, l)
		}
	}
}

func TestTee(t *testing.T) {
	var got []string
	sink := func(name string) func(Event) {
		return func(ev Event) { got = append(got, name+":"+ev.Message) }
	}
	Tee(sink("a"), nil, sink("b"))(Event{Message: "m"})
	if strings.Join(got, ",") != "a:m,b:m" {
		t.Errorf("got %v", got)
	}
	Tee()(Event{Message: "nobody listens"})
}
