package engine

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/partition"
)

// DefaultImagesPerDisk is how many images deploy at once onto one disk when
// DeployOptions.ImagesPerDisk is 0. Measured on 2 CPUs (the figures are in the README),
// two images at once onto a virtio disk in the deploy ramdisk took 18-29 % less time than
// one after another with 2 virtual CPUs, and on a loop device the two tied; most likely
// one image decodes while the other waits for the disk. Decoding zstd or gzip takes a
// core per image, so more would only share the same cores.
const DefaultImagesPerDisk = 2

// deployAll deploys every image of l: at most perDisk at once onto each disk (0:
// DefaultImagesPerDisk), never two that share a filesystem at once, images on different
// disks side by side. The first failure cancels the rest. took, when set, is told how
// long each image's own deploy took (from the moment it holds its slots).
func deployAll(ctx context.Context, l *partition.Layout, devs partition.Devices, d *deploy.Deployer, events emitter, took func(image string, d time.Duration), perDisk int) error {
	return runImages(ctx, l, perDisk, func(ctx context.Context, im *partition.Image) error {
		events.emit(Event{Message: fmt.Sprintf("deploying image %s from %s into %s", im.Name, im.URL, im.Target)})
		start := time.Now()
		err := d.Deploy(ctx, l, im, devs)
		if took != nil {
			took(im.Name, time.Since(start))
		}
		return err
	})
}

// runImages runs one goroutine per image of l, each calling deploy once it holds a slot
// on every disk its filesystems use and every one of those filesystems (see slots). The
// first error cancels the context of the rest; an image that gets its slots after that
// is not started.
func runImages(ctx context.Context, l *partition.Layout, perDisk int, deploy func(context.Context, *partition.Image) error) error {
	if perDisk < 1 {
		perDisk = DefaultImagesPerDisk
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := newSlots(perDisk)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		skipped  bool // an image was not started because ctx was done
	)
	for _, im := range l.Images {
		c := imageClaim{disks: imageDisks(l, im), filesystems: imageFilesystems(im)}
		wg.Go(func() {
			s.acquire(c)
			defer s.release(c)
			if ctx.Err() != nil {
				mu.Lock()
				skipped = true
				mu.Unlock()
				return
			}
			if err := deploy(ctx, im); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	if firstErr == nil && skipped {
		// Cancelled from outside between two images: the ones not started did not fail,
		// but they are not deployed either.
		return context.Cause(ctx)
	}
	return firstErr
}

// imageClaim is what an image holds while it deploys: a slot on each disk its
// filesystems use, and each of those filesystems alone.
type imageClaim struct {
	disks, filesystems []string
}

// slots hands out disk slots and filesystems. An image takes everything it needs at once
// or waits holding nothing, so no two images can each hold what the other waits for
// (no deadlock, whatever the order of disks and filesystems), and an image waiting for a
// filesystem in use leaves its disks' slots to images that can run.
type slots struct {
	mu      sync.Mutex
	cond    *sync.Cond
	perDisk int
	onDisk  map[string]int  // images deploying onto each disk
	inUse   map[string]bool // filesystems (by UUID) an image deploying mounts
}

func newSlots(perDisk int) *slots {
	s := &slots{perDisk: perDisk, onDisk: map[string]int{}, inUse: map[string]bool{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// acquire waits until every disk of c has a free slot and none of its filesystems is in
// use, then takes them all.
func (s *slots) acquire(c imageClaim) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.fits(c) {
		s.cond.Wait()
	}
	for _, d := range c.disks {
		s.onDisk[d]++
	}
	for _, fs := range c.filesystems {
		s.inUse[fs] = true
	}
}

// fits says whether c can be taken now; s.mu is held.
func (s *slots) fits(c imageClaim) bool {
	for _, d := range c.disks {
		if s.onDisk[d] >= s.perDisk {
			return false
		}
	}
	for _, fs := range c.filesystems {
		if s.inUse[fs] {
			return false
		}
	}
	return true
}

// release gives back what acquire took and wakes the images waiting.
func (s *slots) release(c imageClaim) {
	s.mu.Lock()
	for _, d := range c.disks {
		s.onDisk[d]--
	}
	for _, fs := range c.filesystems {
		delete(s.inUse, fs)
	}
	s.mu.Unlock()
	s.cond.Broadcast()
}

// imageFilesystems lists, sorted and once each, the UUIDs of the filesystems an image
// mounts.
func imageFilesystems(im *partition.Image) []string {
	set := map[string]bool{}
	for _, m := range im.Mounts {
		if m.FSUUID != "" {
			set[m.FSUUID] = true
		}
	}
	out := make([]string, 0, len(set))
	for u := range set {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}
