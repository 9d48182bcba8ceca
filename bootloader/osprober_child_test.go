package bootloader

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/run"
)

// TestProbeConfinedFake checks the child's loop: only Linux partitions that are allowed
// are probed, a failing linux-boot-prober is recorded and the others still probed, and
// the probers get the confined environment.
func TestProbeConfinedFake(t *testing.T) {
	env := []string{"LC_ALL=C", "OS_PROBER_DISABLE_DEBUG=1"}
	f := &run.Fake{Handler: func(c run.Call) (run.Result, error) {
		switch strings.Join(c.Argv, " ") {
		case "os-prober":
			return run.Result{Stdout: []byte(strings.Join([]string{
				"/dev/loop4p2:Image A:A:linux",
				"/dev/loop4p3:Image B:B:linux",
				"/dev/loop4p4:Image C:C:linux",
				"/dev/loop4p5:Windows:Windows:chain",
				"/dev/sdz1:Someone else's:Other:linux",
			}, "\n") + "\n")}, nil
		case "linux-boot-prober /dev/loop4p2":
			return run.Result{Stdout: []byte("/dev/loop4p2:/dev/loop4p2::/boot/vmlinuz-6.1:/boot/initrd.img-6.1:root=/dev/loop4p2\n")}, nil
		case "linux-boot-prober /dev/loop4p3":
			return run.Result{Stdout: []byte("garbage\n")}, run.Fail(c.Argv, 1, "grub-mount: error\n")
		case "linux-boot-prober /dev/loop4p4":
			return run.Result{}, nil
		}
		return run.Result{}, fmt.Errorf("unexpected %q", c.Argv)
	}}
	allowed := func(p string) bool { return strings.HasPrefix(p, "/dev/loop4") }
	rep, err := probeConfined(context.Background(), f, env, allowed)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Format != proberFormat || len(rep.Roots) != 3 {
		t.Fatalf("report: %+v", rep)
	}
	a, b, c := rep.Roots[0], rep.Roots[1], rep.Roots[2]
	if a.Partition != "/dev/loop4p2" || a.Name != "Image A" || a.Error != "" || len(a.Entries) != 1 || a.Entries[0].Kernel != "/boot/vmlinuz-6.1" {
		t.Errorf("root A: %+v", a)
	}
	if b.Partition != "/dev/loop4p3" || len(b.Entries) != 0 || !strings.Contains(b.Error, "grub-mount: error") {
		t.Errorf("root B (linux-boot-prober failed): %+v", b)
	}
	if c.Partition != "/dev/loop4p4" || len(c.Entries) != 0 || c.Error == "" {
		t.Errorf("root C (no kernel): %+v", c)
	}
	want := []string{"os-prober", "linux-boot-prober /dev/loop4p2", "linux-boot-prober /dev/loop4p3", "linux-boot-prober /dev/loop4p4"}
	if got := f.Commands(); !slices.Equal(got, want) {
		t.Errorf("commands:\n got %q\nwant %q", got, want)
	}
	for _, call := range f.Calls() {
		if !slices.Equal(call.Env, env) || call.MountNamespace {
			t.Errorf("%q: env %q, namespace %v", call.Argv, call.Env, call.MountNamespace)
		}
	}

	// Nothing found: os-prober exits 0 silently.
	f = &run.Fake{}
	rep, err = probeConfined(context.Background(), f, env, allowed)
	if err != nil || len(rep.Roots) != 0 || rep.Roots == nil {
		t.Errorf("nothing found: %+v, %v", rep, err)
	}
	// os-prober itself failing fails the child.
	f = &run.Fake{Handler: func(c run.Call) (run.Result, error) { return run.Result{}, run.Fail(c.Argv, 1, "boom\n") }}
	if _, err := probeConfined(context.Background(), f, env, allowed); err == nil {
		t.Error("a failing os-prober: no error")
	}
}

// TestConfinedProberRefusesParentNamespace: run directly (not through Probe) the child
// must not mount anything. As root only the check itself is called, so that a broken
// check cannot hide this machine's disks.
func TestConfinedProberRefusesParentNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		var out strings.Builder
		err := ConfinedProberMain(context.Background(), &run.Fake{}, []string{"/dev/loop0"}, &out)
		if err == nil || out.Len() != 0 {
			t.Errorf("ConfinedProberMain in the parent's namespace: %v, printed %q", err, out.String())
		}
		return
	}
	if err := checkOwnMountNamespace(); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("checkOwnMountNamespace in the parent's namespace: %v", err)
	}
}
