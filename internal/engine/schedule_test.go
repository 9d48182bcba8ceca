package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/provisioner/provisioner/partition"
)

// scheduleSpec has three images on sda (each its own root), two on sdb that also share
// /srv, and one on sdc.
const scheduleSpec = `{"images": [
   {"name": "a", "url": "u", "target": "/"}, {"name": "b", "url": "u", "target": "/"}, {"name": "c", "url": "u", "target": "/"},
   {"name": "d", "url": "u", "target": "/"}, {"name": "e", "url": "u", "target": "/"}, {"name": "f", "url": "u", "target": "/"}],
 "boot_mode": "bios",
 "partitions": [
  {"type": "disk", "id": {"type": "name", "value": "sda"}, "size": "4 GiB", "volumes": [
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["a"]},
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["b"]},
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["c"]}]},
  {"type": "disk", "id": {"type": "name", "value": "sdb"}, "size": "4 GiB", "volumes": [
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["d"]},
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["e"]},
    {"type": "partition", "mount": "/srv", "file_system": "ext4", "size": "1 GiB", "images": ["d", "e"]}]},
  {"type": "disk", "id": {"type": "name", "value": "sdc"}, "size": "4 GiB", "volumes": [
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["f"]}]}]}`

// scheduleTracker is a fake image deploy that records how many images run at once, in
// all, per disk and per filesystem.
type scheduleTracker struct {
	l       *partition.Layout
	want    int // peak the deploys wait for (up to a second) before they return
	mu      sync.Mutex
	running int
	peak    int
	onDisk  map[string]int
	maxDisk map[string]int
	onFS    map[string]int
	errs    []string
	calls   int
}

func (tr *scheduleTracker) deploy(ctx context.Context, im *partition.Image) error {
	disks := imageDisks(tr.l, im)
	tr.mu.Lock()
	tr.calls++
	tr.running++
	tr.peak = max(tr.peak, tr.running)
	for _, d := range disks {
		tr.onDisk[d]++
		tr.maxDisk[d] = max(tr.maxDisk[d], tr.onDisk[d])
	}
	for _, m := range im.Mounts {
		if tr.onFS[m.FSUUID]++; tr.onFS[m.FSUUID] > 1 {
			tr.errs = append(tr.errs, fmt.Sprintf("image %s mounts %s (%s) while another image deploys into it", im.Name, m.Path, m.FSUUID))
		}
	}
	tr.mu.Unlock()
	// Every image that may run together with this one gets the time to start, so the
	// peak shows what the schedule allows, not how fast goroutines happen to start.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		tr.mu.Lock()
		reached := tr.peak >= tr.want
		tr.mu.Unlock()
		if reached {
			break
		}
	}
	time.Sleep(2 * time.Millisecond)
	tr.mu.Lock()
	tr.running--
	for _, d := range disks {
		tr.onDisk[d]--
	}
	for _, m := range im.Mounts {
		tr.onFS[m.FSUUID]--
	}
	tr.mu.Unlock()
	return nil
}

// TestRunImagesBound: with the bound n, at most n images of one disk run at once (and n
// do), images sharing a filesystem never overlap, and images on different disks run side
// by side; every image is deployed once.
func TestRunImagesBound(t *testing.T) {
	l, err := partition.Plan(loadString(t, scheduleSpec), nil, "disks")
	if err != nil {
		t.Fatal(err)
	}
	for _, perDisk := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(perDisk), func(t *testing.T) {
			// sda runs perDisk of a, b, c; sdb one of d and e (they share /srv); sdc f.
			tr := &scheduleTracker{l: l, want: min(perDisk, 3) + 1 + 1, onDisk: map[string]int{}, maxDisk: map[string]int{}, onFS: map[string]int{}}
			if err := runImages(context.Background(), l, perDisk, tr.deploy); err != nil {
				t.Fatal(err)
			}
			for _, e := range tr.errs {
				t.Error(e)
			}
			if tr.calls != len(l.Images) {
				t.Errorf("%d deploys, want %d", tr.calls, len(l.Images))
			}
			if tr.maxDisk["sda"] != perDisk {
				t.Errorf("at most %d images ran at once on sda, want %d", tr.maxDisk["sda"], perDisk)
			}
			if tr.maxDisk["sdb"] != 1 {
				t.Errorf("at most %d images ran at once on sdb, want 1 (d and e share /srv)", tr.maxDisk["sdb"])
			}
			if tr.peak != tr.want {
				t.Errorf("at most %d images ran at once, want %d (sda's, one of sdb's, sdc's)", tr.peak, tr.want)
			}
		})
	}
}

// TestRunImagesDefault: a bound of 0 is DefaultImagesPerDisk.
func TestRunImagesDefault(t *testing.T) {
	l, err := partition.Plan(loadString(t, scheduleSpec), nil, "disks")
	if err != nil {
		t.Fatal(err)
	}
	tr := &scheduleTracker{l: l, want: DefaultImagesPerDisk + 2, onDisk: map[string]int{}, maxDisk: map[string]int{}, onFS: map[string]int{}}
	if err := runImages(context.Background(), l, 0, tr.deploy); err != nil {
		t.Fatal(err)
	}
	if tr.maxDisk["sda"] != DefaultImagesPerDisk {
		t.Errorf("at most %d images ran at once on sda, want %d", tr.maxDisk["sda"], DefaultImagesPerDisk)
	}
}

// TestRunImagesFirstFailure: the first failure cancels the image running beside it on
// the same disk and is returned; the image waiting for a slot is never started.
func TestRunImagesFirstFailure(t *testing.T) {
	spec := `{"images": [{"name": "a", "url": "u", "target": "/"}, {"name": "b", "url": "u", "target": "/"}, {"name": "c", "url": "u", "target": "/"}],
	 "boot_mode": "bios", "partitions": [{"type": "disk", "id": {"type": "name", "value": "sda"}, "size": "4 GiB", "volumes": [
	    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["a"]},
	    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["b"]},
	    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["c"]}]}]}`
	l, err := partition.Plan(loadString(t, spec), nil, "disks")
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	var mu sync.Mutex
	calls := 0
	second := make(chan struct{})
	err = runImages(context.Background(), l, 2, func(ctx context.Context, im *partition.Image) error {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			// Fails once the second image is deploying beside it.
			select {
			case <-second:
			case <-time.After(5 * time.Second):
				t.Error("no second image ran beside the first on a disk with two slots")
			}
			return boom
		}
		close(second)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
			t.Error("the first failure did not cancel the image running beside it")
			return nil
		}
	})
	if !errors.Is(err, boom) {
		t.Errorf("error %v, want the first failure", err)
	}
	if calls != 2 {
		t.Errorf("%d images started, want 2 (the third is not started after the failure)", calls)
	}
}
