//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/initramfs"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/internal/testimage"
	"github.com/provisioner/provisioner/internal/vmrun"
)

// The suite's shared material, built once in TestMain: the deploy ramdisk and the test
// images.
var (
	ramdisk *initramfs.Result
	kit     *testimage.Kit
	images  = map[string][]byte{}
	setup   error
	// provisionerBin is the static provisioner the OS images carry.
	provisionerBin []byte
)

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			fmt.Fprintln(os.Stderr, "integration: needs root (QEMU disks, loop devices)")
			return 0
		}
		tmp, err := os.MkdirTemp("", "provisioner-integration-")
		if err != nil {
			setup = err
			return m.Run()
		}
		defer os.RemoveAll(tmp)
		setup = prepare(tmp)
		return m.Run()
	}()
	os.Exit(code)
}

// prepare builds the ramdisk (cloud kernel: it boots twice as fast under TCG) and the
// images.
func prepare(tmp string) error {
	ctx := context.Background()
	start := time.Now()
	goCmd := os.Getenv("PROVISIONER_GO")
	if goCmd == "" {
		goCmd = "go"
	}
	var err error
	if dir := os.Getenv("PROVISIONER_RAMDISK"); dir != "" {
		// A ramdisk built earlier (make ramdisk FLAVOUR=cloud-amd64), to iterate on a test.
		ramdisk, err = prebuilt(dir)
		if err != nil {
			return err
		}
	} else {
		ramdisk, err = initramfs.Build(ctx, initramfs.Options{
			Flavour: "cloud-amd64", OutDir: filepath.Join(tmp, "ramdisk"), GoCmd: []string{goCmd},
			Run: run.Exec{}, Log: slog.New(slog.DiscardHandler),
		})
	}
	if err != nil {
		return fmt.Errorf("building the ramdisk: %w", err)
	}
	fmt.Fprintf(os.Stderr, "integration: ramdisk %s (%d bytes, %s) built in %v\n", ramdisk.Initramfs, ramdisk.Size, ramdisk.KernelVersion, time.Since(start).Round(time.Second))
	kit, err = testimage.Prepare(ctx, run.Exec{}, testimage.DefaultCacheDir())
	if err != nil {
		return fmt.Errorf("preparing the test images: %w", err)
	}
	// The provisioner itself goes into the OS images, so a booted image can switch the
	// default as an operator would; built as the ramdisk's is (without the FleetLock
	// server), as the node tools of a deploy from the ramdisk are.
	bin := filepath.Join(tmp, "provisioner")
	if _, err := (run.Exec{}).Run(ctx, run.Cmd{Argv: []string{goCmd, "build", "-trimpath", "-tags", "nofleetlockserver", "-o", bin, "./cmd/provisioner"},
		Dir: "..", Env: []string{"CGO_ENABLED=0"}}); err != nil {
		return fmt.Errorf("building the provisioner for the images: %w", err)
	}
	if provisionerBin, err = os.ReadFile(bin); err != nil {
		return err
	}
	for _, o := range osImages() {
		var b bytes.Buffer
		if err := kit.WriteTarGz(&b, o); err != nil {
			return err
		}
		images[o.Name+".tar.gz"] = b.Bytes()
		fmt.Fprintf(os.Stderr, "integration: image %s.tar.gz: %d bytes\n", o.Name, b.Len())
	}
	var tools bytes.Buffer
	if err := kit.WriteTarGz(&tools, testimage.Options{Name: "tools", Marker: "UTILITY-IMAGE", NoKernel: true}); err != nil {
		return err
	}
	images["tools.tar.gz"] = tools.Bytes()
	return nil
}

// imageHostTools are the host programs a provisioner inside a booted image runs to
// reload another image's root: mke2fs re-creates it with its UUID and label, blkid
// probes the kept filesystems and finds partitions by UUID.
var imageHostTools = []string{"mke2fs", "blkid"}

// osImages are the OS images of the suite. a and b are deployed; b2 (a new version of b),
// bpanic (its kernel panics once the marker is out) and bcorrupt (grub cannot load its
// kernel) are what a reload inside a booted image installs in b's place.
func osImages() []testimage.Options {
	// As on Debian, /etc/mtab is a link to the kernel's mount table, for the tools that
	// read it (mke2fs, when /proc/mounts cannot tell).
	withProvisioner := map[string]testimage.File{"usr/bin/provisioner": {Data: provisionerBin, Mode: 0o755},
		"etc/mtab": {Data: []byte("../proc/self/mounts"), Mode: fs.ModeSymlink}}
	var l []testimage.Options
	for _, name := range []string{"a", "b", "b2", "a2"} {
		files := withProvisioner
		if name == "a" || name == "a2" {
			files = liveFiles(name, withProvisioner)
		}
		l = append(l, testimage.Options{Name: name, Marker: "BOOTED-IMAGE-" + strings.ToUpper(name), PrettyName: "Tiny test image " + strings.ToUpper(name),
			Files: files, InitScript: imageInitScript, HostTools: imageHostTools})
	}
	return append(l,
		testimage.Options{Name: "bpanic", Marker: "BOOTED-IMAGE-BPANIC", PrettyName: "Tiny test image B (kernel panic)", PanicAfterMarker: true},
		testimage.Options{Name: "bcorrupt", Marker: "BOOTED-IMAGE-BCORRUPT", PrettyName: "Tiny test image B (corrupt kernel)", CorruptKernel: true})
}

// liveFiles adds to files what a live reload of a by a2 changes: a program that runs as a
// service (a copy of busybox named sleep, so that it runs the sleep applet; a2's copy has
// other bytes: a trailer the program ignores), and a file only a2 has.
func liveFiles(name string, files map[string]testimage.File) map[string]testimage.File {
	out := maps.Clone(files)
	prog, err := os.ReadFile(kit.Busybox)
	if err != nil {
		panic(fmt.Sprintf("integration: reading the kit's busybox: %v", err))
	}
	if name == "a2" {
		prog = append(slices.Clone(prog), "\nimage a2\n"...)
		out["etc/a2-release"] = testimage.File{Data: []byte("tiny a2\n"), Mode: 0o644}
	}
	out["usr/local/bin/sleep"] = testimage.File{Data: prog, Mode: 0o755}
	return out
}

// imageInitScript runs in every booted OS image after its marker: it mounts what its
// fstab lists (printing each /srv and /boot mount, and a utility image's id found under
// /srv/tools), then runs the script a test put on a command disk: a disk whose content
// starts with the line "PROVCMD:" (see commandDisk). Its output goes to the console.
// /run is a tmpfs as on a systemd node (blkid keeps its cache there); the script's PATH
// has the sbin directories, where the images' host tools are.
//
// A VM with a NIC (bootNet) is on QEMU's user network, where the guest is 10.0.2.15/24
// and the host, also the gateway, 10.0.2.2: the script configures eth0 (or the first
// interface other than lo) that way, without DHCP, and prints "NET-UP <interface>"
// before mounting anything; a VM without a NIC has only lo and the script prints
// nothing about the network.
const imageInitScript = `mount -t tmpfs tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
nic=
[ -e /sys/class/net/eth0 ] && nic=eth0
if [ -z "$nic" ]; then
	for n in /sys/class/net/*; do
		[ -e "$n" ] && [ "${n##*/}" != lo ] && { nic=${n##*/}; break; }
	done
fi
if [ -n "$nic" ]; then
	busybox ip link set lo up
	busybox ip link set "$nic" up &&
		busybox ip addr add 10.0.2.15/24 dev "$nic" &&
		busybox ip route add default via 10.0.2.2 &&
		echo "NET-UP $nic" >/dev/console
fi
mount -a 2>/dev/null
grep -E ' /(srv|boot)' /proc/mounts | while read dev mnt rest; do echo "MOUNTED $mnt" >/dev/console; done
[ -f /srv/tools/etc/image-id ] && echo "TOOLS=$(cat /srv/tools/etc/image-id)" >/dev/console
for d in /dev/vd?; do
	if [ "$(head -c 8 $d)" = "PROVCMD:" ]; then
		head -c 65536 $d | tr -d '\000' | tail -n +2 >/tmp/cmd.sh
		echo "CMD-BEGIN" >/dev/console
		PATH=/bin:/usr/bin:/sbin:/usr/sbin sh /tmp/cmd.sh >/dev/console 2>&1
		echo "CMD-END rc=$?" >/dev/console
	fi
done`

// prebuilt describes the ramdisk in dir (vmlinuz and initramfs.cpio.zst or .gz).
func prebuilt(dir string) (*initramfs.Result, error) {
	r := &initramfs.Result{Kernel: filepath.Join(dir, "vmlinuz")}
	for _, name := range []string{"initramfs.cpio.zst", "initramfs.cpio.gz"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil {
			r.Initramfs, r.Size = filepath.Join(dir, name), fi.Size()
		}
	}
	if _, err := os.Stat(r.Kernel); err != nil || r.Initramfs == "" {
		return nil, fmt.Errorf("PROVISIONER_RAMDISK=%s: no vmlinuz and initramfs.cpio.{zst,gz} there", dir)
	}
	return r, nil
}

func needSuite(t *testing.T) {
	t.Helper()
	if setup != nil {
		t.Fatal(setup)
	}
	if ramdisk == nil {
		t.Skip("integration suite not set up (not root)")
	}
}

// newConductor starts a conductor serving the test images, closed with the test.
func newConductor(t *testing.T) *vmrun.Conductor {
	t.Helper()
	c, err := vmrun.NewConductor("integration-token")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for k, v := range images {
		c.Put(k, v)
	}
	return c
}

// ramdiskArgs is the ramdisk's kernel command line: the serial console, the callback and
// token of conductor c, and extra parameters.
func ramdiskArgs(c *vmrun.Conductor, extra ...string) string {
	return strings.Join(append([]string{"console=ttyS0 quiet panic=-1",
		"provisioner.callback=" + c.GuestURL(vmrun.CallbackName), "provisioner.token=" + c.Token}, extra...), " ")
}

// runVM runs a VM and returns its serial log; the log is printed when the test fails,
// and a VM that times out fails the test.
func runVM(t *testing.T, o vmrun.Options) []byte {
	t.Helper()
	o.Dir = t.TempDir()
	res, err := vmrun.Run(context.Background(), o)
	t.Logf("VM ran %v", res.Duration.Round(100*time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serial log:\n%s", res.Serial)
		}
	})
	if err != nil {
		t.Error(err)
	}
	return res.Serial
}

// sparse creates a sparse disk-image file.
func sparse(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

// markerRE matches the marker a booted image prints first on its console.
var markerRE = regexp.MustCompile(`BOOTED-IMAGE-[A-Z0-9-]*[A-Z0-9]`)

// marker returns the BOOTED-IMAGE-X marker in a serial log ("" when none).
func marker(log []byte) string {
	return string(markerRE.Find(log))
}
