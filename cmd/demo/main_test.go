package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/engine"
)

// TestPrintDurations: the demo prints every phase of the final event's durations, the
// bootloader's steps among them, and says so when the event has none.
func TestPrintDurations(t *testing.T) {
	var b bytes.Buffer
	printDurations(&b, &engine.Durations{TotalMS: 12000, PlanMS: 200, PartitionMS: 1800, ImagesMS: 3400, BootloaderMS: 6600,
		PerImageMS: map[string]int64{"debian": 3300, "tiny": 900},
		Bootloader: &engine.BootloaderMS{KernelDiscoveryMS: 5900, GrubInstallMS: 4000, GrubBIOSMS: 4000, GrubUEFIMS: 1500, CommitMS: 700, Concurrent: true}})
	for _, want := range []string{"==> phases of the deploy", "    plan        0.2 s\n", "    images      3.4 s\n", "      debian    3.3 s\n",
		"    bootloader  6.6 s\n", "kernel discovery 5.9 s (alongside the installs)", "grub install 4.0 s (BIOS 4.0 s, UEFI 1.5 s, side by side)",
		"      commit      0.7 s\n", "    total       12.0 s\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	printDurations(&b, nil)
	if !strings.Contains(b.String(), "no durations") {
		t.Errorf("without durations: %q", b.String())
	}
}
