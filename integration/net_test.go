//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/internal/vmrun"
)

// rootDisk makes an ext4 disk-image file, without a partition table, holding the root
// filesystem of the suite's image name (images[name+".tar.gz"]), so a test can boot the
// image's kernel and stage 1 directly with root=/dev/vda and skip a deploy. tar unpacks
// the image as the ramdisk would; mke2fs -d fills the disk without mounting it.
func rootDisk(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	tgz := filepath.Join(dir, name+".tar.gz")
	if err := os.WriteFile(tgz, images[name+".tar.gz"], 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := (run.Exec{}).Run(ctx, run.Cmd{Argv: []string{"tar", "-xzf", tgz, "-C", root}}); err != nil {
		t.Fatalf("unpacking image %s: %v", name, err)
	}
	// The gzip'ed image is at least a third of its unpacked size; ext4 needs a few MiB more.
	img := sparse(t, 32<<20+3*int64(len(images[name+".tar.gz"])))
	if _, err := (run.Exec{}).Run(ctx, run.Cmd{Argv: []string{"mke2fs", "-F", "-q", "-t", "ext4", "-d", root, img}}); err != nil {
		t.Fatalf("making the root disk of image %s: %v", name, err)
	}
	return img
}

// TestImageNetwork boots image A's kernel and stage 1 on its root filesystem with a NIC
// and, as a control, without one. With the NIC, the image's init configures it for
// QEMU's user network and a command fetches a file from the conductor with busybox
// wget; without it, the image boots as before and says nothing about the network.
func TestImageNetwork(t *testing.T) {
	needSuite(t)
	c := newConductor(t)
	payload := "NET-PAYLOAD-" + rand.Text()[:8]
	c.Put("payload.txt", []byte(payload+"\n"))
	root := rootDisk(t, "a")
	script := "busybox wget -q -O - " + c.GuestURL("payload.txt")
	direct := vmrun.Options{Kernel: kit.Vmlinuz, Initrd: kit.Initrd, Append: "console=ttyS0 root=/dev/vda quiet panic=-1"}

	t.Run("nic", func(t *testing.T) {
		o := direct
		o.Net = true
		log := bootVM(t, o, []string{root}, nil, script)
		expectBoot(t, log, "BOOTED-IMAGE-A")
		if bytes.Contains(log, []byte("stage-1:")) {
			t.Error("stage 1 complained (a module failed to load?)")
		}
		if !bytes.Contains(log, []byte("NET-UP eth0")) {
			t.Error("the image did not bring eth0 up")
		}
		out := cmdOutput(log)
		if !strings.Contains(out, payload) {
			t.Errorf("wget printed %q, want %q", out, payload)
		}
		t.Logf("%s; wget printed %q", bootLine(log), out)
	})
	t.Run("no nic", func(t *testing.T) {
		log := bootVM(t, direct, []string{root}, nil, "echo no-network-check")
		expectBoot(t, log, "BOOTED-IMAGE-A")
		t.Log(bootLine(log))
		for _, bad := range []string{"NET-UP", "ip:", "RTNETLINK", "stage-1:"} {
			if bytes.Contains(log, []byte(bad)) {
				t.Errorf("the console shows %q without a NIC", bad)
			}
		}
	})
}

// bootLine is the line an image prints with its marker (its root and uptime).
func bootLine(log []byte) string {
	for _, l := range strings.Split(string(log), "\n") {
		if markerRE.MatchString(l) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
