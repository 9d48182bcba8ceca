package bootloader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
)

// TestMain lets the test binary act as the confined prober child, as cmd/provisioner
// does, so that the loop-device test runs the real re-execution path.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ConfinedProberArg {
		var r run.Runner = run.Exec{}
		if f := os.Getenv(spyEnv); f != "" {
			r = spyRunner{r, f}
		}
		if err := ConfinedProberMain(context.Background(), r, os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// spyEnv names a file into which the child, when it runs os-prober, writes what
// os-prober can see: the partitions it walks (/sys/block/*/*[0-9] with a start file) and
// the devices in /proc/partitions, one "part NAME" or "proc NAME" line each.
const spyEnv = "PROVISIONER_TEST_PROBER_SPY"

type spyRunner struct {
	run.Runner
	file string
}

func (s spyRunner) Run(ctx context.Context, cmd run.Cmd) (run.Result, error) {
	if cmd.Argv[0] == "os-prober" {
		var b strings.Builder
		parts, _ := filepath.Glob("/sys/block/*/*[0-9]")
		for _, p := range parts {
			if _, err := os.Stat(filepath.Join(p, "start")); err == nil {
				fmt.Fprintf(&b, "part %s\n", filepath.Base(p))
			}
		}
		procParts, _ := os.ReadFile("/proc/partitions")
		for _, line := range strings.Split(string(procParts), "\n")[1:] {
			if f := strings.Fields(line); len(f) == 4 {
				fmt.Fprintf(&b, "proc %s\n", f[3])
			}
		}
		if err := os.WriteFile(s.file, []byte(b.String()), 0o644); err != nil {
			return run.Result{}, err
		}
	}
	return s.Runner.Run(ctx, cmd)
}

func TestParseOSProber(t *testing.T) {
	out := strings.Join([]string{
		"/dev/loop4p4:Tiny test image A:TinyA:linux",
		"/dev/sda1@/EFI/Microsoft/Boot/bootmgfw.efi:Windows Boot Manager:Windows:efi",
		"garbage without colons",
		"/dev/sdb2:Fake: \"quoted\" ünïcode 1.0:Fake1:linux\r",
		"/dev/sdb3:::linux", // no PRETTY_NAME: empty long and short names
		"/dev/loop4p4:Duplicate:Dup:linux",
		"relative:Name:Short:linux",
		"/dev/sdc1:only:three",
		"",
		"   ",
	}, "\n")
	want := []osEntry{
		{"/dev/loop4p4", "Tiny test image A", "TinyA", "linux"},
		{"/dev/sda1@/EFI/Microsoft/Boot/bootmgfw.efi", "Windows Boot Manager", "Windows", "efi"},
		{"/dev/sdb2", "Fake: \"quoted\" ünïcode 1.0", "Fake1", "linux"},
		{"/dev/sdb3", "", "", "linux"},
	}
	if got := parseOSProber([]byte(out)); !reflect.DeepEqual(got, want) {
		t.Errorf("parseOSProber:\n got %q\nwant %q", got, want)
	}
	if got := parseOSProber(nil); len(got) != 0 {
		t.Errorf("no output: %q", got)
	}
}

func TestParseBootProber(t *testing.T) {
	out := strings.Join([]string{
		// Same volume, from the fallback probe.
		"/dev/loop4p4:/dev/loop4p4::/boot/vmlinuz-6.1.0-56-cloud-amd64:/boot/initrd.img-6.1.0-56-cloud-amd64:root=/dev/loop4p4",
		// Separate /boot, paths already prefixed (os-prober 1.81).
		"/dev/sda2:/dev/sda1:Debian GNU/Linux:/boot/vmlinuz-6.1.0-1:/boot/initrd.img-6.1.0-1:root=UUID=x ro quiet",
		// Separate /boot, paths on the /boot volume (older probes).
		"/dev/sda2:/dev/sda1:Debian, recovery:/vmlinuz-6.1.0-2:/initrd.img-6.1.0-2:ip=10.0.0.2::10.0.0.1:255.255.255.0::eth0:off",
		// No initrd; params with colons; odd characters in the label.
		"/dev/sdb1:/dev/sdb1:Arch (x) 'q' \"q\" $x;|&:/boot/vmlinuz-linux::console=ttyS0,115200n8 a:b:c",
		// Microcode before the real initrd; a grub path to clean.
		"/dev/sdb1:/dev/sdb1:Arch:/boot/../boot/vmlinuz-6.2:/boot/intel-ucode.img /boot/initramfs-6.2.img:",
		// Empty boot field counts as the root.
		"/dev/sdd1:::/vmlinuz-5.10::",
		"/dev/sdb1:/dev/sdb1:too few fields:/boot/vmlinuz-x",
		"/dev/sdb1:/dev/sdb1:relative kernel:vmlinuz-x::",
		"/dev/sdb1:/dev/sdb1:escape in path:/boot/vmlinuz-\x1b[31m::",
		"/dev/sdb1:/dev/sdb1:tab in initrd:/boot/vmlinuz-7:/boot/initrd\t.img:",
		"junk line",
		"",
	}, "\n")
	want := []bootEntry{
		{"/dev/loop4p4", "/dev/loop4p4", "/boot/vmlinuz-6.1.0-56-cloud-amd64", "/boot/initrd.img-6.1.0-56-cloud-amd64"},
		{"/dev/sda2", "/dev/sda1", "/boot/vmlinuz-6.1.0-1", "/boot/initrd.img-6.1.0-1"},
		{"/dev/sda2", "/dev/sda1", "/boot/vmlinuz-6.1.0-2", "/boot/initrd.img-6.1.0-2"},
		{"/dev/sdb1", "/dev/sdb1", "/boot/vmlinuz-linux", ""},
		{"/dev/sdb1", "/dev/sdb1", "/boot/vmlinuz-6.2", "/boot/initramfs-6.2.img"},
		{"/dev/sdd1", "/dev/sdd1", "/vmlinuz-5.10", ""},
	}
	if got := parseBootProber([]byte(out)); !reflect.DeepEqual(got, want) {
		t.Errorf("parseBootProber:\n got %q\nwant %q", got, want)
	}
}

// TestParseBounds checks that a runaway output is cut, not held or parsed in full.
func TestParseBounds(t *testing.T) {
	line := "/dev/sda1:/dev/sda1::/boot/vmlinuz-1::\n"
	out := strings.Repeat(line, maxProberLines+10)
	if got := parseBootProber([]byte(out)); len(got) != maxProberLines {
		t.Errorf("%d entries parsed, want the bound %d", len(got), maxProberLines)
	}
	huge := "/dev/sda1:" + strings.Repeat("x", 2*maxProberOutput) + ":X:linux\n/dev/sda2:A:A:linux\n"
	if got := parseOSProber([]byte(huge)); len(got) != 0 {
		t.Errorf("an oversized line gave %d entries", len(got))
	}
}

func TestPickKernel(t *testing.T) {
	e := func(kernel, initrd string) bootEntry {
		return bootEntry{Root: "/dev/sda2", Boot: "/dev/sda2", Kernel: kernel, Initrd: initrd}
	}
	tests := []struct {
		name    string
		entries []bootEntry
		want    Kernel
		ok      bool
	}{
		{"none", nil, Kernel{}, false},
		{"newest by version, not by string", []bootEntry{
			e("/boot/vmlinuz-6.1.0-9-amd64", "/boot/initrd.img-6.1.0-9-amd64"),
			e("/boot/vmlinuz-6.1.0-10-amd64", "/boot/initrd.img-6.1.0-10-amd64"),
			e("/boot/vmlinuz-6.1.0-10-amd64~rc1", ""),
		}, Kernel{Path: "/boot/vmlinuz-6.1.0-10-amd64", Initrd: "/boot/initrd.img-6.1.0-10-amd64", Version: "6.1.0-10-amd64"}, true},
		{"old, bak and rescue only when nothing else", []bootEntry{
			e("/boot/vmlinuz-7.0.old", ""),
			e("/boot/vmlinuz-0-rescue-abc", "/boot/initramfs-0-rescue-abc.img"),
			e("/boot/vmlinuz-5.10", ""),
		}, Kernel{Path: "/boot/vmlinuz-5.10", Version: "5.10"}, true},
		{"old as a last resort", []bootEntry{
			e("/boot/vmlinuz-7.0.old", ""),
			e("/boot/vmlinuz-6.0.bak", ""),
		}, Kernel{Path: "/boot/vmlinuz-7.0.old", Version: "7.0.old"}, true},
		{"unversioned names last", []bootEntry{
			e("/vmlinuz", "/initrd.img"),
			e("/boot/vmlinux-4.19", ""),
		}, Kernel{Path: "/boot/vmlinux-4.19", Version: "4.19"}, true},
		{"unversioned only", []bootEntry{e("/vmlinuz", "/initrd.img")}, Kernel{Path: "/vmlinuz", Initrd: "/initrd.img", Version: "vmlinuz"}, true},
		{"vmlinux beats an older vmlinuz", []bootEntry{
			e("/boot/vmlinuz-6.1", ""),
			e("/boot/vmlinux-6.2", ""),
		}, Kernel{Path: "/boot/vmlinux-6.2", Version: "6.2"}, true},
		{"initrd as ProbeRoot prefers it", []bootEntry{
			e("/boot/vmlinuz-6.1", "/boot/initrd-6.1"),
			e("/boot/vmlinuz-6.1", "/boot/initrd.img-6.1.old-dkms"),
			e("/boot/vmlinuz-6.1", "/boot/initramfs-6.1.img"),
		}, Kernel{Path: "/boot/vmlinuz-6.1", Initrd: "/boot/initramfs-6.1.img", Version: "6.1"}, true},
		{"else the first initrd", []bootEntry{
			e("/boot/vmlinuz-6.1", ""),
			e("/boot/vmlinuz-6.1", "/boot/initrd.img-6.1.old-dkms"),
			e("/boot/vmlinuz-6.1", "/boot/initrd.img-6.1.dpkg-bak"),
		}, Kernel{Path: "/boot/vmlinuz-6.1", Initrd: "/boot/initrd.img-6.1.old-dkms", Version: "6.1"}, true},
		{"same version: the path breaks the tie", []bootEntry{
			e("/vmlinuz-6.1", ""),
			e("/boot/vmlinuz-6.1", ""),
		}, Kernel{Path: "/vmlinuz-6.1", Version: "6.1"}, true},
	}
	for _, tt := range tests {
		got, ok := pickKernel(tt.entries)
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s: got %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
		// Order of the lines must not matter.
		rev := slices.Clone(tt.entries)
		slices.Reverse(rev)
		if got2, _ := pickKernel(rev); got2.Path != got.Path || got2.Version != got.Version {
			t.Errorf("%s: reversed input chose %+v, not %+v", tt.name, got2, got)
		}
	}
}

func TestReportRoundTrip(t *testing.T) {
	rep := proberReport{Format: proberFormat, Roots: []proberRoot{
		{Partition: "/dev/loop4p4", Name: "Tiny: \"A\"\x1b", Entries: []bootEntry{
			{Root: "/dev/loop4p4", Boot: "/dev/loop4p4", Kernel: "/boot/vmlinuz-6.1", Initrd: "/boot/initrd.img-6.1"},
		}},
		{Partition: "/dev/loop4p5", Name: "B", Error: "linux-boot-prober /dev/loop4p5: exit status 1"},
	}}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeReport(append(b, '\n'))
	if err != nil || !reflect.DeepEqual(got, rep) {
		t.Errorf("round trip: %+v, %v\nwant %+v", got, err, rep)
	}

	bad := map[string]string{
		"other format":  `{"format":2,"roots":[],"new":true}`,
		"no format":     `{"roots":[]}`,
		"unknown field": `{"format":1,"roots":[{"partition":"/dev/x","kernel":"/boot/v"}]}`,
		"trailing data": `{"format":1,"roots":[]} {"format":1}`,
		"empty":         " \n",
		"not json":      "os-prober: warning\n",
		"oversized":     `{"format":1,"roots":[],"x":"` + strings.Repeat("x", maxChildReport) + `"}`,
	}
	for name, in := range bad {
		if _, err := decodeReport([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := decodeReport([]byte(`{"format":2}`)); err == nil || !strings.Contains(err.Error(), "format 2") {
		t.Errorf("a format mismatch should say so: %v", err)
	}
}

// TestProbeFake drives Probe with a canned child: the argv and namespace it asks for,
// canonical keys, roots without kernels left out, names cleaned.
func TestProbeFake(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Stand-ins for device nodes: a link to a "dm-3", as /dev/mapper/vg-root is one.
	dm := filepath.Join(dir, "dm-3")
	part := filepath.Join(dir, "loop4p4")
	for _, f := range []string{dm, part} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mapper := filepath.Join(dir, "vg-root")
	if err := os.Symlink("dm-3", mapper); err != nil {
		t.Fatal(err)
	}
	rep := proberReport{Format: proberFormat, Roots: []proberRoot{
		{Partition: part, Name: "Tiny\ttest\x1b image A", Entries: []bootEntry{
			{Root: part, Boot: part, Kernel: "/boot/vmlinuz-6.1.0-9-test", Initrd: "/boot/initrd.img-6.1.0-9-test"},
			{Root: part, Boot: part, Kernel: "/boot/vmlinuz-6.1.0-10-test", Initrd: "/boot/initrd.img-6.1.0-10-test"},
		}},
		{Partition: mapper, Name: "", Entries: []bootEntry{{Root: mapper, Boot: "/dev/sda1", Kernel: "/boot/vmlinuz-5.10"}}},
		{Partition: filepath.Join(dir, "failed"), Name: "C", Error: "exit status 1"},
		{Partition: filepath.Join(dir, "empty"), Name: "D"},
	}}
	child, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	f := &run.Fake{Handler: func(c run.Call) (run.Result, error) {
		return run.Result{Stdout: child}, nil
	}}
	p := OSProber{Run: f, Self: []string{"/proc/self/exe", "--flag"}}
	got, err := p.Probe(context.Background(), []string{"/dev/loop4", "/dev/loop5"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Kernel{
		part: {Path: "/boot/vmlinuz-6.1.0-10-test", Initrd: "/boot/initrd.img-6.1.0-10-test", Version: "6.1.0-10-test", OSName: "Tiny test image A"},
		dm:   {Path: "/boot/vmlinuz-5.10", Version: "5.10", OSName: "Linux"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Probe:\n got %+v\nwant %+v", got, want)
	}
	calls := f.Calls()
	if len(calls) != 1 || !calls[0].MountNamespace ||
		!slices.Equal(calls[0].Argv, []string{"/proc/self/exe", "--flag", ConfinedProberArg, "/dev/loop4", "/dev/loop5"}) {
		t.Errorf("calls: %+v", calls)
	}
}

func TestProbeFakeErrors(t *testing.T) {
	ctx := context.Background()
	answer := func(stdout string, err error) *run.Fake {
		return &run.Fake{Handler: func(c run.Call) (run.Result, error) {
			return run.Result{Stdout: []byte(stdout)}, err
		}}
	}

	f := answer("", nil)
	got, err := OSProber{Run: f, Self: []string{"self"}}.Probe(ctx, nil)
	if err != nil || len(got) != 0 || len(f.Calls()) != 0 {
		t.Errorf("no disks: %v, %v, %d calls", got, err, len(f.Calls()))
	}
	if _, err := (OSProber{Run: f}).Probe(ctx, []string{"/dev/sda"}); err == nil {
		t.Error("no Self: accepted")
	}
	if _, err := (OSProber{Run: f, Self: []string{"self"}}).Probe(ctx, []string{"sda"}); err == nil {
		t.Error("a relative disk path: accepted")
	}

	childErr := run.Fail([]string{"self", ConfinedProberArg, "/dev/sda"}, 1, "confined os-prober: refusing ...\n")
	_, err = OSProber{Run: answer("", childErr), Self: []string{"self"}}.Probe(ctx, []string{"/dev/sda"})
	var re *run.Error
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "/dev/sda") || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("a failing child: %v", err)
	}

	_, err = OSProber{Run: answer(`{"format":99}`, nil), Self: []string{"self"}}.Probe(ctx, []string{"/dev/sda"})
	if err == nil || !strings.Contains(err.Error(), "format 99") {
		t.Errorf("another format: %v", err)
	}

	// A root os-prober named that is gone by the time the parent looks: no silent wrong key.
	missing := fmt.Sprintf(`{"format":%d,"roots":[{"partition":"/dev/provisioner-test-missing","name":"X","entries":[{"root":"/dev/x","boot":"/dev/x","kernel":"/boot/vmlinuz-1"}]}]}`, proberFormat)
	if _, err := (OSProber{Run: answer(missing, nil), Self: []string{"self"}}).Probe(ctx, []string{"/dev/sda"}); err == nil {
		t.Error("an unresolvable root: accepted")
	}
}

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

// TestConfine builds a fake sysfs: the allowed disk loop3, an md array on one of its
// partitions with a dm volume on the array's partition, and another disk with its own
// dm volume, which must stay hidden.
func TestConfine(t *testing.T) {
	sys, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	devices := filepath.Join(sys, "devices")
	block := filepath.Join(sys, "block")
	mk := func(dev string, parts []string, slaves []string) {
		t.Helper()
		d := filepath.Join(devices, dev)
		for _, p := range parts {
			if err := os.MkdirAll(filepath.Join(d, p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, p, "partition"), []byte("1\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(filepath.Join(d, "slaves"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, s := range slaves {
			if err := os.Symlink("../../"+s, filepath.Join(d, "slaves", s)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(filepath.Join(d, "queue"), 0o755); err != nil { // a non-partition subdirectory
			t.Fatal(err)
		}
		if err := os.MkdirAll(block, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../devices/"+dev, filepath.Join(block, dev)); err != nil {
			t.Fatal(err)
		}
	}
	mk("loop3", []string{"loop3p1", "loop3p2"}, nil)
	mk("loop9", []string{"loop9p1"}, nil)
	mk("dm-1", nil, []string{"md0p1"}) // listed before md0: found on a second pass
	mk("md0", []string{"md0p1"}, []string{"loop3p2"})
	mk("dm-2", nil, []string{"loop9p1"})
	mk("vda", nil, nil)

	c, err := newConfinement(block, []string{"loop3", "loop3"})
	if err != nil {
		t.Fatal(err)
	}
	wantLinks := map[string]string{
		"loop3": filepath.Join(devices, "loop3"),
		"md0":   filepath.Join(devices, "md0"),
		"dm-1":  filepath.Join(devices, "dm-1"),
	}
	if !reflect.DeepEqual(c.links, wantLinks) {
		t.Errorf("links: %v\nwant %v", c.links, wantLinks)
	}
	wantNames := map[string]bool{"loop3": true, "loop3p1": true, "loop3p2": true, "md0": true, "md0p1": true, "dm-1": true}
	if !reflect.DeepEqual(c.names, wantNames) {
		t.Errorf("names: %v\nwant %v", c.names, wantNames)
	}

	if _, err := newConfinement(block, []string{"loop3p1"}); err == nil {
		t.Error("a partition accepted as a whole disk")
	}
}

func TestLVMConfig(t *testing.T) {
	got := lvmConfig(map[string]bool{"loop3": true, "loop3p2": true, "dm-1": true, "cciss!c0d0": true})
	want := "devices {\n" +
		"\tfilter = [ \"a|^/dev/dm-1$|\", \"a|^/dev/loop3$|\", \"a|^/dev/loop3p2$|\", \"r|.*|\" ]\n" +
		"\tglobal_filter = [ \"a|^/dev/dm-1$|\", \"a|^/dev/loop3$|\", \"a|^/dev/loop3p2$|\", \"r|.*|\" ]\n" +
		"}\n"
	if got != want {
		t.Errorf("lvm.conf:\n%s\nwant\n%s", got, want)
	}
}

func TestFilterPartitions(t *testing.T) {
	in := "major minor  #blocks  name\n\n 254        0   20971520 vda\n 254        1   20970496 vda1\n   7        3      65536 loop3\n 259        0      16384 loop3p1\n 259        9      16384 loop3p10\n"
	want := "major minor  #blocks  name\n\n   7        3      65536 loop3\n 259        0      16384 loop3p1\n"
	if got := string(filterPartitions([]byte(in), map[string]bool{"loop3": true, "loop3p1": true})); got != want {
		t.Errorf("filtered:\n%s\nwant\n%s", got, want)
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

// TestOSProberOnLoopDisks runs the real os-prober and linux-boot-prober through Probe on
// a loop disk with two fake Linux roots, one of them with a separate /boot volume, while a
// second loop disk holding another root is attached but not given: Probe must report
// exactly the first two, as ProbeRoot sees the same trees.
func TestOSProberOnLoopDisks(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("loop-device test: needs root and no -short")
	}
	if !OSProberAvailable() {
		t.Skip("os-prober or linux-boot-prober is not installed")
	}
	for _, tool := range []string{"sgdisk", "mkfs.ext4", "grub-mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing (make test installs it)", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	ctx := context.Background()
	dir := t.TempDir()
	sh := func(argv ...string) {
		t.Helper()
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}

	const bootUUID = "5d2b7c1e-3f4a-4b8e-9c0d-1e2f3a4b5c6d"
	ld := map[string]string{"lib64/ld-linux-x86-64.so.2": "", "boot/": ""}
	files := func(m ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, x := range m {
			for k, v := range x {
				out[k] = v
			}
		}
		return out
	}
	treeA := files(ld, map[string]string{
		"etc/os-release":                "NAME=FakeA\nPRETTY_NAME=\"Fake A: \\\"one\\\" 1.0\"\n",
		"boot/vmlinuz-6.1.0-1-test":     "kernel 1",
		"boot/initrd.img-6.1.0-1-test":  "initrd 1",
		"boot/vmlinuz-6.1.0-10-test":    "kernel 10",
		"boot/initrd.img-6.1.0-10-test": "initrd 10",
		"boot/vmlinuz-6.1.0-9-test":     "kernel 9",
		"boot/vmlinuz-7.0.0-1-test.old": "old kernel",
	})
	bootFiles := map[string]string{
		"vmlinuz-6.1.0-1-test":    "kernel B",
		"initrd.img-6.1.0-1-test": "initrd B",
	}
	treeB := files(ld, map[string]string{
		"etc/os-release": "PRETTY_NAME='Fake B'\n",
		"etc/fstab":      "# separate /boot\nUUID=" + bootUUID + " /boot ext4 defaults 0 2\n",
	})
	viewB := files(treeB) // root B as the booted system sees it, for ProbeRoot
	for k, v := range bootFiles {
		viewB["boot/"+k] = v
	}
	treeOther := files(ld, map[string]string{
		"etc/os-release":               "PRETTY_NAME=\"Someone else's\"\n",
		"boot/vmlinuz-6.1.0-1-test":    "other kernel",
		"boot/initrd.img-6.1.0-1-test": "other initrd",
	})
	write := func(name string, m map[string]string) string {
		t.Helper()
		root := filepath.Join(dir, name)
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		for p, content := range m {
			full := filepath.Join(root, p)
			if strings.HasSuffix(p, "/") {
				if err := os.MkdirAll(full, 0o755); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	dirA, dirB, dirBoot, dirView, dirOther := write("a", treeA), write("b", treeB), write("boot", bootFiles), write("view-b", viewB), write("other", treeOther)

	// 16 MiB partitions at fixed sectors, so that the BLKPG layout matches sgdisk's.
	const sect, psize = 512, 32768
	attach := func(name string, nparts int) (*disk.Loop, []string) {
		t.Helper()
		img := filepath.Join(dir, name+".img")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, int64((2048+nparts*psize+2048)*sect)); err != nil {
			t.Fatal(err)
		}
		args := []string{"sgdisk", "-o"}
		var parts []disk.Part
		for i := 1; i <= nparts; i++ {
			start := uint64(2048 + (i-1)*psize)
			args = append(args, fmt.Sprintf("-n%d:%d:%d", i, start, start+psize-1), fmt.Sprintf("-t%d:8300", i))
			parts = append(parts, disk.Part{Number: i, Start: start * sect, Size: psize * sect})
		}
		sh(append(args, img)...)
		loop, err := disk.AttachLoop(ctx, img, sect)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// Fails when a partition is still open, e.g. by a grub-mount left running.
			if err := loop.Detach(ctx); err != nil {
				t.Errorf("detach: %v", err)
			}
		})
		if err := (disk.Sys{}).Reread(ctx, loop.Path, parts); err != nil {
			t.Fatal(err)
		}
		var paths []string
		for i := 1; i <= nparts; i++ {
			paths = append(paths, disk.PartitionPath(loop.Path, i))
		}
		return loop, paths
	}
	target, tparts := attach("target", 3)
	other, oparts := attach("other", 1)
	sh("mkfs.ext4", "-q", "-F", "-L", "rootA", "-d", dirA, tparts[0])
	sh("mkfs.ext4", "-q", "-F", "-L", "rootB", "-d", dirB, tparts[1])
	sh("mkfs.ext4", "-q", "-F", "-L", "bootB", "-U", bootUUID, "-d", dirBoot, tparts[2])
	sh("mkfs.ext4", "-q", "-F", "-L", "other", "-d", dirOther, oparts[0])

	want := map[string]Kernel{}
	for i, tree := range []string{dirA, dirView} {
		k, err := ProbeRoot(tree)
		if err != nil {
			t.Fatal(err)
		}
		want[tparts[i]] = k
	}
	if want[tparts[0]].Version != "6.1.0-10-test" || want[tparts[0]].OSName != `Fake A: "one" 1.0` {
		t.Fatalf("ProbeRoot on root A: %+v", want[tparts[0]])
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := OSProber{Run: run.Exec{}, Self: []string{exe}}
	spy := filepath.Join(dir, "spy")
	t.Setenv(spyEnv, spy)
	start := time.Now()
	got, err := p.Probe(ctx, []string{target.Path})
	t.Logf("os-prober confined to %s (3 partitions) took %v", target.Path, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Probe(%s):\n got %+v\nwant %+v", target.Path, got, want)
	}
	// What os-prober saw: the target disk's partitions, nothing else (so the other
	// disk's absence above is not only the child's final filter).
	seen, err := os.ReadFile(spy)
	if err != nil {
		t.Fatal(err)
	}
	var wantSeen strings.Builder
	for _, p := range tparts {
		fmt.Fprintf(&wantSeen, "part %s\n", filepath.Base(p))
	}
	wantSeen.WriteString("proc " + filepath.Base(target.Path) + "\n")
	for _, p := range tparts {
		fmt.Fprintf(&wantSeen, "proc %s\n", filepath.Base(p))
	}
	if string(seen) != wantSeen.String() {
		t.Errorf("os-prober saw:\n%s\nwant\n%s", seen, wantSeen.String())
	}

	// The other disk's root is findable: its absence above is the confinement's doing.
	start = time.Now()
	got, err = p.Probe(ctx, []string{other.Path})
	t.Logf("os-prober confined to %s (1 partition) took %v", other.Path, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := got[oparts[0]]; len(got) != 1 || !ok || k.OSName != "Someone else's" || k.Path != "/boot/vmlinuz-6.1.0-1-test" {
		t.Errorf("Probe(%s): %+v", other.Path, got)
	}

	// Nothing of the child's namespace may show in ours.
	if _, err := os.Stat(filepath.Join(sysBlockDir, filepath.Base(other.Path))); err != nil {
		t.Errorf("our /sys/block lost %s: %v", other.Path, err)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"provisioner-sysblock", "provisioner-os-prober", proberState} {
		if strings.Contains(string(mounts), leak) {
			t.Errorf("%s is mounted in the test's namespace", leak)
		}
	}
}
