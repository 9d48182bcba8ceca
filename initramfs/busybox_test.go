package initramfs

import (
	"context"
	"slices"
	"testing"

	"github.com/provisioner/provisioner/internal/run"
)

func TestAppletLinks(t *testing.T) {
	available := []string{"sh", "ls", "mount", "blkid", "xz", "modprobe"}
	wanted := []string{"sh", "ls", "mount", "blkid", "xz", "vi"}
	taken := func(name string) bool { return name == "blkid" || name == "xz" } // util-linux, xz-utils
	links, missing, err := appletLinks(wanted, available, []string{"sh"}, taken)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"sh", "ls", "mount"}; !slices.Equal(links, want) {
		t.Errorf("links = %q, want %q", links, want)
	}
	if want := []string{"vi"}; !slices.Equal(missing, want) {
		t.Errorf("missing = %q, want %q", missing, want)
	}
	if _, _, err := appletLinks(wanted, []string{"ls"}, []string{"sh"}, taken); err == nil {
		t.Error("a busybox without sh was accepted")
	}
}

// The applet list never names a tool whose busybox version would replace a real one.
func TestBusyboxAppletsAvoidRealTools(t *testing.T) {
	for _, name := range []string{"modprobe", "insmod", "depmod", "mke2fs", "mkswap", "fdisk", "xz", "blkid", "losetup"} {
		if slices.Contains(busyboxApplets, name) {
			t.Errorf("busyboxApplets has %s", name)
		}
	}
	for _, tool := range hostTools {
		if slices.Contains(busyboxApplets, tool.name) {
			t.Errorf("busyboxApplets has %s, which %s provides", tool.name, tool.pkg)
		}
	}
}

func TestListApplets(t *testing.T) {
	f := &run.Fake{Handler: func(c run.Call) (run.Result, error) {
		return run.Result{Stdout: []byte("[\n[[\nsh\n\nls\n")}, nil
	}}
	got, err := listApplets(context.Background(), f, "/x/busybox")
	if err != nil || !slices.Equal(got, []string{"[", "[[", "sh", "ls"}) {
		t.Errorf("listApplets = %q, %v", got, err)
	}
	if cmds := f.Commands(); !slices.Equal(cmds, []string{"/x/busybox --list"}) {
		t.Errorf("ran %q", cmds)
	}
}
