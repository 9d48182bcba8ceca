package initramfs

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/run"
)

// bootAppend is the kernel command line of the smoke test. Besides the deploy settings
// it asks for evidence: loglevel=6 (after quiet, so it wins) lets the kernel's notice
// lines through, among them virtio_blk's "[vda]"; "-- -v" passes -v to u-root's init,
// which then logs each command it starts and leaves the console log level alone.
const bootAppend = "console=ttyS0 quiet panic=-1 provisioner.after=poweroff loglevel=6 -- -v"

// bootMarkers must all appear on the serial console.
var bootMarkers = []*regexp.Regexp{
	regexp.MustCompile(`Welcome to u-root!`),
	regexp.MustCompile(`virtio_blk virtio\d+: \[vda\]`),
	regexp.MustCompile(`Trying to run /bin/uinit ramdisk-boot`),
	regexp.MustCompile(`(?m)^provisioner ramdisk: booted`),
}

// bootFailures end the test as soon as they appear.
var bootFailures = regexp.MustCompile(`Kernel panic|Attempted to kill init|Unknown symbol|can't install "[^"]+": .*`)

// moduleFailureOK is the one module load that fails by design: efivarfs refuses to load
// (ENODEV) on a machine booted without EFI, as this VM is (SeaBIOS).
var moduleFailureOK = regexp.MustCompile(`can't install "efivarfs": failed to load module: no such device`)

// TestBootQEMU boots the built ramdisk under QEMU (TCG) with a virtio NIC and a blank
// virtio disk, and watches the serial console for u-root's init, the virtio disk, and
// the provisioner's first line, failing on a panic or a module that does not load.
func TestBootQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU: not with -short")
	}
	qemu, err := run.LookPath("qemu-system-x86_64")
	if err != nil {
		skipUnlessCI(t, "no qemu-system-x86_64 (package qemu-system-x86)")
	}
	res := builtRamdisk(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	serial := filepath.Join(dir, "serial.log")
	argv := []string{qemu, "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "1024",
		"-display", "none", "-serial", "file:" + serial, "-no-reboot",
		"-kernel", res.Kernel, "-initrd", res.Initramfs, "-append", bootAppend,
		"-nic", "user,model=virtio-net-pci", "-drive", "file=" + disk + ",if=virtio,format=raw"}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	exited := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := run.Exec{}.Run(ctx, run.Cmd{Argv: argv})
		exited <- err
	}()
	// QEMU must be gone before t.TempDir is removed.
	defer func() { cancel(); <-exited }()

	var log string
	var seenAll time.Time
watch:
	for {
		b, _ := os.ReadFile(serial) // absent until QEMU opens it
		log = string(b)
		if failures := unexpectedFailures(log); len(failures) > 0 {
			t.Fatalf("boot failed: %q\nserial console:\n%s", failures, tail(log, 60))
		}
		if seenAll.IsZero() && allMarkers(log) {
			seenAll = time.Now()
			t.Logf("all markers after %v", seenAll.Sub(start).Round(100*time.Millisecond))
		}
		// A few seconds more: a crash right after the provisioner started (init then
		// panics) must fail the test too.
		if !seenAll.IsZero() && time.Since(seenAll) > 3*time.Second {
			break
		}
		select {
		case err := <-exited:
			exited <- err // for the deferred receive
			b, _ := os.ReadFile(serial)
			log = string(b)
			if failures := unexpectedFailures(log); len(failures) > 0 || !allMarkers(log) {
				t.Fatalf("QEMU exited (%v) before all markers; failures %q\nserial console:\n%s", err, failures, tail(log, 60))
			}
			break watch
		case <-ctx.Done():
			t.Fatalf("no boot within %v: serial console:\n%s", 5*time.Minute, tail(log, 60))
		case <-time.After(200 * time.Millisecond):
		}
	}
	for _, l := range strings.Split(log, "\n") {
		for _, m := range append(bootMarkers, moduleFailureOK) {
			if m.MatchString(l) {
				t.Logf("serial: %s", strings.TrimSpace(l))
			}
		}
	}
}

// allMarkers reports whether every boot marker is in log.
func allMarkers(log string) bool {
	for _, m := range bootMarkers {
		if !m.MatchString(log) {
			return false
		}
	}
	return true
}

// unexpectedFailures returns the failure lines of log other than the expected one.
func unexpectedFailures(log string) []string {
	var out []string
	for _, f := range bootFailures.FindAllString(log, -1) {
		if !moduleFailureOK.MatchString(f) {
			out = append(out, f)
		}
	}
	return out
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
