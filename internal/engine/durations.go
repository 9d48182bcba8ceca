package engine

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// Durations say how long each phase of a successful deploy took, in milliseconds, so
// that a conductor (the final event), a person (deploy's output) and a benchmark see
// where the time goes without parsing logs. A phase runs from its first event to the
// next phase's; plan starts with the deploy and the bootloader phase ends with it.
type Durations struct {
	TotalMS      int64 `json:"total_ms"`
	PlanMS       int64 `json:"plan_ms"`
	PartitionMS  int64 `json:"partition_ms"`
	ImagesMS     int64 `json:"images_ms"`
	BootloaderMS int64 `json:"bootloader_ms"`
	// PerImageMS is each image's own deploy (fetch, verify, extract, fstab), by image
	// name; images deployed side by side overlap, so these may add up to more than
	// ImagesMS.
	PerImageMS map[string]int64 `json:"per_image_ms,omitempty"`
	// Bootloader breaks the bootloader phase down; nil when no image has target /.
	Bootloader *BootloaderMS `json:"bootloader_steps,omitempty"`
}

// BootloaderMS are the bootloader phase's steps, in milliseconds. Kernel discovery and
// grub's installs overlap when Concurrent is true, so the phase may take less than their
// sum.
type BootloaderMS struct {
	KernelDiscoveryMS int64 `json:"kernel_discovery_ms"`
	// GrubInstallMS is the installs' wall time: the longer of GrubBIOSMS and GrubUEFIMS,
	// which run side by side.
	GrubInstallMS int64 `json:"grub_install_ms"`
	GrubBIOSMS    int64 `json:"grub_bios_ms,omitempty"`
	GrubUEFIMS    int64 `json:"grub_uefi_ms,omitempty"`
	// CommitMS covers the menu, the kept ramdisk, the boot files and the NVRAM entry.
	CommitMS int64 `json:"commit_ms"`
	// Concurrent says kernel discovery ran alongside the installs (false: before them,
	// as grub's directory was on a volume it reads).
	Concurrent bool `json:"concurrent"`
}

// BootDurations are what bootStep.run measures.
type BootDurations struct {
	KernelDiscovery, GrubInstall, GrubBIOS, GrubUEFI, Commit time.Duration
	Concurrent                                               bool
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// report is d in milliseconds.
func (d BootDurations) report() *BootloaderMS {
	return &BootloaderMS{
		KernelDiscoveryMS: ms(d.KernelDiscovery), GrubInstallMS: ms(d.GrubInstall),
		GrubBIOSMS: ms(d.GrubBIOS), GrubUEFIMS: ms(d.GrubUEFI), CommitMS: ms(d.Commit), Concurrent: d.Concurrent,
	}
}

// phaseClock times a run's phases from the events that begin them.
type phaseClock struct {
	mu     sync.Mutex
	now    func() time.Time
	start  time.Time
	phases []string
	starts []time.Time
	images map[string]time.Duration
}

// newPhaseClock starts a clock reading now (nil: time.Now).
func newPhaseClock(now func() time.Time) *phaseClock {
	if now == nil {
		now = time.Now
	}
	return &phaseClock{now: now, start: now(), images: map[string]time.Duration{}}
}

// wrap returns a sink that notes phase changes, then passes each event to next (nil: none).
func (c *phaseClock) wrap(next func(Event)) func(Event) {
	return func(ev Event) {
		if ev.Phase != "" {
			c.mu.Lock()
			if n := len(c.phases); n == 0 || c.phases[n-1] != ev.Phase {
				c.phases = append(c.phases, ev.Phase)
				c.starts = append(c.starts, c.now())
			}
			c.mu.Unlock()
		}
		if next != nil {
			next(ev)
		}
	}
}

// image records how long image name's own deploy took.
func (c *phaseClock) image(name string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.images[name] = d
}

// durations ends the clock now. A phase that begins more than once (none does
// today) adds up; the time before the first phase event counts as plan.
func (c *phaseClock) durations(boot *BootDurations) *Durations {
	c.mu.Lock()
	defer c.mu.Unlock()
	end := c.now()
	per := map[string]time.Duration{}
	for i, p := range c.phases {
		from, to := c.starts[i], end
		if i == 0 {
			from = c.start
		}
		if i+1 < len(c.starts) {
			to = c.starts[i+1]
		}
		per[p] += to.Sub(from)
	}
	d := &Durations{
		TotalMS: ms(end.Sub(c.start)), PlanMS: ms(per[PhasePlan]), PartitionMS: ms(per[PhasePartition]),
		ImagesMS: ms(per[PhaseImages]), BootloaderMS: ms(per[PhaseBootloader]),
	}
	if len(c.images) > 0 {
		d.PerImageMS = map[string]int64{}
		for name, t := range c.images {
			d.PerImageMS[name] = ms(t)
		}
	}
	if boot != nil {
		d.Bootloader = boot.report()
	}
	return d
}

// secs renders milliseconds as seconds with one decimal.
func secs(v int64) string { return fmt.Sprintf("%.1f s", float64(v)/1000) }

// Lines renders d for people: one line per phase, in order, with its breakdown.
func (d *Durations) Lines() []string {
	if d == nil {
		return nil
	}
	lines := []string{
		"plan        " + secs(d.PlanMS),
		"partition   " + secs(d.PartitionMS),
		"images      " + secs(d.ImagesMS),
	}
	names := make([]string, 0, len(d.PerImageMS))
	for n := range d.PerImageMS {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		lines = append(lines, fmt.Sprintf("  %-10s%s", n, secs(d.PerImageMS[n])))
	}
	lines = append(lines, "bootloader  "+secs(d.BootloaderMS))
	if b := d.Bootloader; b != nil {
		how := "before the installs"
		if b.Concurrent {
			how = "alongside the installs"
		}
		lines = append(lines, fmt.Sprintf("  kernel discovery %s (%s)", secs(b.KernelDiscoveryMS), how))
		var parts []string
		if b.GrubBIOSMS > 0 {
			parts = append(parts, "BIOS "+secs(b.GrubBIOSMS))
		}
		if b.GrubUEFIMS > 0 {
			parts = append(parts, "UEFI "+secs(b.GrubUEFIMS))
		}
		install := "  grub install " + secs(b.GrubInstallMS)
		switch len(parts) {
		case 1:
			install += " (" + parts[0] + ")"
		case 2:
			install += " (" + strings.Join(parts, ", ") + ", side by side)"
		}
		lines = append(lines, install, "  commit      "+secs(b.CommitMS))
	}
	return append(lines, "total       "+secs(d.TotalMS))
}

// PrintDurations writes d's lines under a heading.
func PrintDurations(w io.Writer, d *Durations) {
	if d == nil {
		return
	}
	fmt.Fprintln(w, "durations:")
	for _, l := range d.Lines() {
		fmt.Fprintln(w, "  "+l)
	}
}
