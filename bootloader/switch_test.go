package bootloader

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/confine"
	"golang.org/x/sys/unix"
)

// switchBootInfo is a three-image multiboot deploy whose default is grub_id 0.
func switchBootInfo() *BootInfo {
	return &BootInfo{
		MultibootPartition: "6f3c1a2e-0000-4000-8000-000000000001",
		CurrentElement:     0,
		Elements: []Element{
			{GrubID: 0, ImageName: "centos-9", OSID: "centos", BootName: "CentOS Stream 9 (centos)",
				RootUUID: "aaaa-root-0", MenuentryID: "provisioner-centos", Kernel: "/boot/vmlinuz-5.14"},
			{GrubID: 1, ImageName: "ubuntu-22.04", OSID: "ubuntu", BootName: "Ubuntu 22.04 (ubuntu)",
				RootUUID: "bbbb-root-1", MenuentryID: "provisioner-ubuntu", Kernel: "/boot/vmlinuz-5.15"},
			{GrubID: 2, ImageName: "debian-12", OSID: "utility", BootName: "Debian 12 (utility)",
				RootUUID: "cccc-root-2", MenuentryID: "provisioner-utility", Kernel: "/boot/vmlinuz-6.1"},
		},
	}
}

// writeBootDir builds a boot directory as deploy leaves it: saved_entry and current_element
// both naming grub_id 0. The mtimes are set in the past so that a rewrite is visible even on
// filesystems with coarse timestamps.
func writeBootDir(t *testing.T, bi *BootInfo, env *Env) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "boot/grub"), 0o755); err != nil {
		t.Fatal(err)
	}
	envData, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	biData, err := bi.Encode()
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	for p, d := range map[string][]byte{GrubEnvPath: envData, BootInfoPath: biData} {
		p = filepath.Join(dir, p)
		if err := os.WriteFile(p, d, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, past, past); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func defaultEnv() *Env {
	e := &Env{}
	e.Set("saved_entry", "provisioner-centos")
	return e
}

type fileState struct {
	data  []byte
	mtime time.Time
}

func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	s := map[string]fileState{}
	for _, p := range []string{GrubEnvPath, BootInfoPath} {
		full := filepath.Join(dir, p)
		d, err := os.ReadFile(full)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(full)
		if err != nil {
			t.Fatal(err)
		}
		s[p] = fileState{d, fi.ModTime()}
	}
	return s
}

func assertUntouched(t *testing.T, dir string, before map[string]fileState) {
	t.Helper()
	after := snapshot(t, dir)
	for p, b := range before {
		a := after[p]
		if !bytes.Equal(a.data, b.data) {
			t.Errorf("%s changed:\n%s", p, a.data)
		}
		if !a.mtime.Equal(b.mtime) {
			t.Errorf("%s rewritten: mtime %v, was %v", p, a.mtime, b.mtime)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "boot/grub"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("boot/grub holds %d files, want only grubenv", len(entries))
	}
}

func readEnv(t *testing.T, dir string) *Env {
	t.Helper()
	d, err := os.ReadFile(filepath.Join(dir, GrubEnvPath))
	if err != nil {
		t.Fatal(err)
	}
	e, err := ParseEnv(d)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func readInfo(t *testing.T, dir string) *BootInfo {
	t.Helper()
	bi, err := ReadBootInfo(filepath.Join(dir, BootInfoPath))
	if err != nil {
		t.Fatal(err)
	}
	return bi
}

func TestSwitchDefaultPermanent(t *testing.T) {
	for _, tc := range []struct {
		arg    string
		wantID int
	}{
		{"1", 1},            // grub_id
		{"utility", 2},      // os_id
		{"ubuntu-22.04", 1}, // image_name
		{"debian-12", 2},    // image_name
	} {
		t.Run(tc.arg, func(t *testing.T) {
			dir := writeBootDir(t, switchBootInfo(), defaultEnv())
			res, err := SwitchDefault(context.Background(), dir, SwitchOptions{Entry: tc.arg})
			if err != nil {
				t.Fatal(err)
			}
			want := switchBootInfo().Elements[tc.wantID]
			if res.Unchanged || res.Once || res.From.GrubID != 0 || res.To.GrubID != tc.wantID {
				t.Errorf("result = %+v", res)
			}
			if v, _ := readEnv(t, dir).Get("saved_entry"); v != want.MenuentryID {
				t.Errorf("saved_entry = %q, want %q", v, want.MenuentryID)
			}
			bi := readInfo(t, dir)
			if bi.CurrentElement != tc.wantID || bi.PendingOnce != nil {
				t.Errorf("current_element = %d, pending_once = %v", bi.CurrentElement, bi.PendingOnce)
			}
			st, err := List(dir, "")
			if err != nil {
				t.Fatal(err)
			}
			if st.Default != tc.wantID || st.Saved != tc.wantID || st.Pending != nil || st.Mismatch != "" {
				t.Errorf("List = %+v", st)
			}
		})
	}
}

func TestSwitchDefaultOnce(t *testing.T) {
	dir := writeBootDir(t, switchBootInfo(), defaultEnv())
	res, err := SwitchDefault(context.Background(), dir, SwitchOptions{Entry: "utility", Once: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Once || res.Unchanged || res.From.GrubID != 0 || res.To.GrubID != 2 {
		t.Errorf("result = %+v", res)
	}
	env := readEnv(t, dir)
	if v, _ := env.Get("next_entry"); v != "provisioner-utility" {
		t.Errorf("next_entry = %q", v)
	}
	if v, _ := env.Get("saved_entry"); v != "provisioner-centos" {
		t.Errorf("saved_entry = %q, want it unchanged", v)
	}
	bi := readInfo(t, dir)
	if bi.CurrentElement != 0 || bi.PendingOnce == nil || *bi.PendingOnce != 2 {
		t.Errorf("current_element = %d, pending_once = %v", bi.CurrentElement, bi.PendingOnce)
	}
	st, err := List(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Default != 2 || st.Saved != 0 || st.Pending == nil || *st.Pending != 2 || st.Mismatch != "" {
		t.Errorf("List = %+v", st)
	}

	// A permanent switch afterwards cancels the one-shot entry: it must boot next.
	if _, err := SwitchDefault(context.Background(), dir, SwitchOptions{Entry: "ubuntu"}); err != nil {
		t.Fatal(err)
	}
	if v, ok := readEnv(t, dir).Get("next_entry"); ok {
		t.Errorf("next_entry = %q after a permanent switch", v)
	}
	if bi := readInfo(t, dir); bi.PendingOnce != nil || bi.CurrentElement != 1 {
		t.Errorf("after permanent switch: current_element = %d, pending_once = %v", bi.CurrentElement, bi.PendingOnce)
	}
}

func TestSwitchDefaultUnchanged(t *testing.T) {
	for _, arg := range []string{"0", "centos", "centos-9"} {
		dir := writeBootDir(t, switchBootInfo(), defaultEnv())
		before := snapshot(t, dir)
		res, err := SwitchDefault(context.Background(), dir, SwitchOptions{Entry: arg, hook: func(step string) error {
			t.Errorf("%s: hook called (%s): something is being written", arg, step)
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Unchanged || res.To.GrubID != 0 || res.From.GrubID != 0 {
			t.Errorf("%s: result = %+v", arg, res)
		}
		assertUntouched(t, dir, before)
	}
}

func TestSwitchDefaultUnknown(t *testing.T) {
	dir := writeBootDir(t, switchBootInfo(), defaultEnv())
	before := snapshot(t, dir)
	for _, once := range []bool{false, true} {
		_, err := SwitchDefault(context.Background(), dir, SwitchOptions{Entry: "fedora", Once: once})
		if !errors.Is(err, ErrUnknownEntry) {
			t.Fatalf("err = %v, want ErrUnknownEntry", err)
		}
		for _, want := range []string{`"fedora"`, "0 (centos, centos-9)", "1 (ubuntu, ubuntu-22.04)", "2 (utility, debian-12)", dir} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		}
	}
	assertUntouched(t, dir, before)
}

func TestSwitchDefaultGrubEditenv(t *testing.T) {
	bin, err := exec.LookPath("grub-editenv")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("grub-editenv not installed (Debian package grub-common); required in CI")
		}
		t.Skip("grub-editenv not installed (Debian package grub-common)")
	}
	env := defaultEnv()
	env.Set("other", "kept")
	dir := writeBootDir(t, switchBootInfo(), env)
	if _, err := SwitchDefault(context.Background(), dir, SwitchOptions{Entry: "ubuntu"}); err != nil {
		t.Fatal(err)
	}
	if _, err := SwitchDefault(context.Background(), dir, SwitchOptions{Entry: "utility", Once: true}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, filepath.Join(dir, GrubEnvPath), "list").CombinedOutput()
	if err != nil {
		t.Fatalf("grub-editenv list: %v\n%s", err, out)
	}
	want := "saved_entry=provisioner-ubuntu\nother=kept\nnext_entry=provisioner-utility\n"
	if string(out) != want {
		t.Errorf("grub-editenv list:\n%s\nwant:\n%s", out, want)
	}
}

func TestList(t *testing.T) {
	env := &Env{}
	env.Set("saved_entry", "provisioner-ubuntu")
	env.Set("next_entry", "provisioner-utility")
	bi := switchBootInfo()
	bi.CurrentElement = 1
	two := 2
	bi.PendingOnce = &two
	dir := writeBootDir(t, bi, env)

	st, err := List(dir, "BBBB-ROOT-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Elements) != 3 || st.Default != 2 || st.Saved != 1 || st.Mismatch != "" {
		t.Errorf("List = %+v", st)
	}
	if st.Pending == nil || *st.Pending != 2 {
		t.Errorf("Pending = %v, want 2", st.Pending)
	}
	if st.Booted == nil || *st.Booted != 1 {
		t.Errorf("Booted = %v, want 1", st.Booted)
	}

	st, err = List(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Booted != nil {
		t.Errorf("Booted = %d with no root UUID", *st.Booted)
	}
	st, err = List(dir, "dddd-other")
	if err != nil {
		t.Fatal(err)
	}
	if st.Booted != nil {
		t.Errorf("Booted = %d for an unknown root UUID", *st.Booted)
	}
}

func TestListNoGrubEnvSaved(t *testing.T) {
	// grub consumed next_entry; pending_once left behind is expected, not a mismatch.
	bi := switchBootInfo()
	one := 1
	bi.PendingOnce = &one
	dir := writeBootDir(t, bi, &Env{})
	st, err := List(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Default != 0 || st.Saved != 0 || st.Pending != nil || st.Mismatch != "" {
		t.Errorf("List = %+v", st)
	}
}

func TestListMismatch(t *testing.T) {
	env := &Env{}
	env.Set("saved_entry", "provisioner-utility")
	dir := writeBootDir(t, switchBootInfo(), env)
	st, err := List(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Default != 2 || st.Saved != 2 {
		t.Errorf("Default = %d, Saved = %d: grubenv is what grub reads, want 2", st.Default, st.Saved)
	}
	if !strings.Contains(st.Mismatch, "saved_entry") || !strings.Contains(st.Mismatch, "current_element is 0") {
		t.Errorf("Mismatch = %q", st.Mismatch)
	}

	env.Set("saved_entry", "provisioner-gone")
	dir = writeBootDir(t, switchBootInfo(), env)
	st, err = List(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Default != 0 || !strings.Contains(st.Mismatch, "names no entry") {
		t.Errorf("List = %+v", st)
	}
}

// TestSwitchDefaultPowerCut interrupts the second write (boot-info.json) at each step, as a
// power cut would: grubenv is already wholly new, boot-info.json wholly old (or, once renamed,
// wholly new), and List reports the disagreement.
func TestSwitchDefaultPowerCut(t *testing.T) {
	steps := []string{"create", "write", "fsync", "rename", "fsync-dir"}
	errCut := errors.New("power cut")
	for _, once := range []bool{false, true} {
		for i, step := range steps {
			dir := writeBootDir(t, switchBootInfo(), defaultEnv())
			oldInfo := snapshot(t, dir)[BootInfoPath].data
			calls := 0
			_, err := SwitchDefault(context.Background(), dir, SwitchOptions{Entry: "ubuntu", Once: once, hook: func(s string) error {
				calls++
				if calls == len(steps)+i+1 {
					if s != step {
						t.Fatalf("step %d of boot-info write is %q, want %q", i, s, step)
					}
					return errCut
				}
				return nil
			}})
			if !errors.Is(err, errCut) {
				t.Fatalf("once=%v %s: err = %v", once, step, err)
			}
			if !strings.Contains(err.Error(), BootInfoPath) {
				t.Errorf("error %q does not name %s", err, BootInfoPath)
			}
			env := readEnv(t, dir)
			key := "saved_entry"
			if once {
				key = "next_entry"
			}
			if v, _ := env.Get(key); v != "provisioner-ubuntu" {
				t.Errorf("once=%v %s: grubenv %s = %q, want the new entry", once, step, key, v)
			}
			newInfo, err := os.ReadFile(filepath.Join(dir, BootInfoPath))
			if err != nil {
				t.Fatal(err)
			}
			st, err := List(dir, "")
			if err != nil {
				t.Fatal(err)
			}
			if st.Default != 1 {
				t.Errorf("once=%v %s: Default = %d, want 1 (grub boots the new entry)", once, step, st.Default)
			}
			if step == "fsync-dir" {
				// The rename has happened: the file is wholly new and the two agree.
				bi := readInfo(t, dir)
				if bytes.Equal(newInfo, oldInfo) || st.Mismatch != "" ||
					(!once && bi.CurrentElement != 1) || (once && (bi.PendingOnce == nil || *bi.PendingOnce != 1)) {
					t.Errorf("once=%v %s: boot-info not wholly new (mismatch %q):\n%s", once, step, st.Mismatch, newInfo)
				}
				continue
			}
			if !bytes.Equal(newInfo, oldInfo) {
				t.Errorf("once=%v %s: boot-info.json changed:\n%s", once, step, newInfo)
			}
			if st.Mismatch == "" {
				t.Errorf("once=%v %s: List reports no mismatch", once, step)
			}
			// The next switch recovers: it removes the stray temporary file and makes both agree.
			if _, err := SwitchDefault(context.Background(), dir, SwitchOptions{Entry: "ubuntu", Once: once}); err != nil {
				t.Fatal(err)
			}
			if st, err := List(dir, ""); err != nil || st.Mismatch != "" || st.Default != 1 {
				t.Errorf("once=%v %s: after retry: %+v, %v", once, step, st, err)
			}
			if m, _ := filepath.Glob(filepath.Join(dir, "."+BootInfoPath+tempMarker+"*")); len(m) != 0 {
				t.Errorf("stray temporary files after retry: %v", m)
			}
		}
	}
}

// TestSwitchDefaultGrubDirOutside: a boot-info.json whose grub_dir leads out of the boot
// directory (tampered, or corrupted) is refused before anything is written; grubenv is
// never written outside.
func TestSwitchDefaultGrubDirOutside(t *testing.T) {
	for _, grubDir := range []string{"../outside", "boot/../../outside", "/outside", "boot/grub/../../.."} {
		t.Run(grubDir, func(t *testing.T) {
			parent := t.TempDir()
			bi := switchBootInfo()
			bi.GrubDir = grubDir
			dir := writeBootDir(t, bi, defaultEnv())
			// Where the tampered grub_dir points, relative to the boot directory.
			outside := filepath.Join(dir, grubDir)
			if filepath.IsAbs(grubDir) {
				outside = filepath.Join(parent, grubDir)
				bi.GrubDir = outside
				data, _ := bi.Encode()
				os.WriteFile(filepath.Join(dir, BootInfoPath), data, 0o644)
			}
			os.MkdirAll(outside, 0o755)
			before := snapshot(t, dir)
			for _, once := range []bool{false, true} {
				_, err := SwitchDefault(context.Background(), dir, SwitchOptions{Entry: "ubuntu", Once: once})
				if !errors.Is(err, confine.ErrUnsafe) || !strings.Contains(err.Error(), "grub_dir") {
					t.Errorf("once=%v: err = %v, want a refusal of grub_dir", once, err)
				}
			}
			if _, err := List(dir, ""); !errors.Is(err, confine.ErrUnsafe) {
				t.Errorf("List: err = %v, want a refusal of grub_dir", err)
			}
			assertUntouched(t, dir, before)
			if _, err := os.Stat(filepath.Join(outside, "grubenv")); err == nil {
				t.Error("grubenv was written outside the boot directory")
			}
		})
	}
}

// TestSwitchDefaultSymlinkedBootFiles: boot files that are symlinks (to a host file) are
// never read through nor written through: the switch is refused, nothing written.
func TestSwitchDefaultSymlinkedBootFiles(t *testing.T) {
	host := filepath.Join(t.TempDir(), "host")
	const hostContent = "# GRUB Environment Block\nsaved_entry=host\n"
	for _, file := range []string{GrubEnvPath, BootInfoPath} {
		t.Run(file, func(t *testing.T) {
			os.WriteFile(host, []byte(hostContent), 0o644)
			dir := writeBootDir(t, switchBootInfo(), defaultEnv())
			p := filepath.Join(dir, file)
			os.Remove(p)
			if err := os.Symlink(host, p); err != nil {
				t.Fatal(err)
			}
			_, err := SwitchDefault(context.Background(), dir, SwitchOptions{Entry: "ubuntu"})
			switch file {
			case BootInfoPath:
				// Read inside the boot directory, the absolute link leads to nothing.
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("err = %v, want boot-info.json not found below the boot directory", err)
				}
			default:
				if !errors.Is(err, confine.ErrUnsafe) || !strings.Contains(err.Error(), file+" is a symlink") {
					t.Errorf("err = %v, want a refusal of the symlink", err)
				}
			}
			if fi, err := os.Lstat(p); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
				t.Errorf("%s was replaced: %v %v", file, fi, err)
			}
			if b, _ := os.ReadFile(host); string(b) != hostContent {
				t.Errorf("the host file changed: %q", b)
			}
		})
	}
}

// TestCorruptGrubEnv: a grubenv that does not parse still lets List show the menu (saying
// grubenv is unreadable and which entry grub then boots) and SwitchDefault write a valid one.
func TestCorruptGrubEnv(t *testing.T) {
	for name, corrupt := range map[string][]byte{
		"garbage":         bytes.Repeat([]byte{0xff, 0x00, 'x'}, 400),
		"no header":       append([]byte("saved_entry=provisioner-ubuntu\n"), bytes.Repeat([]byte("#"), 993)...),
		"empty":           {},
		"torn assignment": []byte("# GRUB Environment Block\nsaved_entry"),
	} {
		t.Run(name, func(t *testing.T) {
			bi := switchBootInfo()
			bi.CurrentElement = 1
			dir := writeBootDir(t, bi, defaultEnv())
			os.WriteFile(filepath.Join(dir, GrubEnvPath), corrupt, 0o644)
			// grub.cfg as deploy wrote it: without a usable grubenv grub boots its
			// fallback, the deploy's boot image (grub_id 2 here), not current_element.
			cfg := Render(Config{Entries: []MenuEntry{{ID: "provisioner-centos"}, {ID: "provisioner-ubuntu"}, {ID: "provisioner-utility"}}, Default: 2})
			os.WriteFile(filepath.Join(dir, DefaultGrubDir, "grub.cfg"), cfg, 0o644)

			st, err := List(dir, "")
			if len(corrupt) == 0 {
				// An empty grubenv is what grub-install leaves: not an error.
				if err != nil || st.EnvError != "" || st.Default != 2 {
					t.Errorf("empty grubenv: %+v %v", st, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Elements) != 3 || !strings.Contains(st.EnvError, "unreadable") || st.Default != 2 {
				t.Errorf("List = %+v, want the menu, the grubenv error and default 2", st)
			}
			res, err := SwitchDefault(context.Background(), dir, SwitchOptions{Entry: "centos"})
			if err != nil {
				t.Fatal(err)
			}
			if res.EnvRewritten == "" || res.Unchanged {
				t.Errorf("result %+v: the rewrite is not reported", res)
			}
			if v, _ := readEnv(t, dir).Get("saved_entry"); v != "provisioner-centos" {
				t.Errorf("saved_entry = %q", v)
			}
			if st, err = List(dir, ""); err != nil || st.EnvError != "" || st.Default != 0 || st.Mismatch != "" {
				t.Errorf("after the switch: %+v %v", st, err)
			}
		})
	}
}

// TestFallbackEntry reads back the fallback default Render writes, quoted or not.
func TestFallbackEntry(t *testing.T) {
	for _, id := range []string{"provisioner-a", "provisioner-it's", "provisioner-x y"} {
		cfg := Render(Config{Entries: []MenuEntry{{ID: "other"}, {ID: id}}, Default: 1})
		if got := FallbackEntry(cfg); got != id {
			t.Errorf("FallbackEntry = %q, want %q", got, id)
		}
	}
	if got := FallbackEntry([]byte("set default=0\n")); got != "" {
		t.Errorf("FallbackEntry of a foreign grub.cfg = %q", got)
	}
}

// TestSwitchDefaultRefusesPlantedHistory: a history.jsonl that is a FIFO or a symlink stops
// the switch before anything is written (the switch is recorded there afterwards).
func TestSwitchDefaultRefusesPlantedHistory(t *testing.T) {
	for name, plant := range map[string]func(string) error{
		"FIFO":    func(p string) error { return unix.Mkfifo(p, 0o644) },
		"symlink": func(p string) error { return os.Symlink("/etc/passwd", p) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := writeBootDir(t, switchBootInfo(), defaultEnv())
			if err := plant(filepath.Join(dir, HistoryPath)); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)
			_, err := SwitchDefault(context.Background(), dir, SwitchOptions{Entry: "ubuntu"})
			if !errors.Is(err, confine.ErrUnsafe) || !strings.Contains(err.Error(), HistoryPath) {
				t.Errorf("err = %v, want a refusal naming %s", err, HistoryPath)
			}
			assertUntouched(t, dir, before)
			if err := AppendHistory(dir, HistoryEntry{Operation: "switch-default", Result: "x"}); !errors.Is(err, confine.ErrUnsafe) {
				t.Errorf("AppendHistory: err = %v, want a refusal", err)
			}
		})
	}
}

// TestSwitchDefaultHistory: every switch is recorded, with its outcome, except one naming
// an unknown entry.
func TestSwitchDefaultHistory(t *testing.T) {
	ctx := context.Background()
	dir := writeBootDir(t, switchBootInfo(), defaultEnv())
	errCut := errors.New("power cut")
	calls := 0
	cutBootInfo := func(string) error {
		if calls++; calls == len(atomicSteps)+1 {
			return errCut
		}
		return nil
	}
	for _, o := range []SwitchOptions{
		{Entry: "ubuntu"},
		{Entry: "1"},
		{Entry: "utility", Once: true},
		{Entry: "fedora"},
		{Entry: "centos", hook: cutBootInfo},
	} {
		SwitchDefault(ctx, dir, o)
	}
	os.WriteFile(filepath.Join(dir, GrubEnvPath), []byte("garbage"), 0o644)
	if _, err := SwitchDefault(ctx, dir, SwitchOptions{Entry: "ubuntu"}); err != nil {
		t.Fatal(err)
	}
	log, err := ReadHistory(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := log.Entries
	want := []HistoryEntry{
		{Operation: "switch-default", From: "centos", To: "ubuntu", Result: "ok"},
		{Operation: "switch-default", From: "ubuntu", To: "ubuntu", Result: "ok", Detail: "unchanged: already the default"},
		{Operation: "switch-default --once", From: "ubuntu", To: "utility", Result: "ok"},
		{Operation: "switch-default", From: "utility", To: "centos", Result: "failed", Error: "switching default: grubenv already updated, boot info not: "},
		{Operation: "switch-default", From: "ubuntu", To: "ubuntu", Result: "ok", Detail: "grubenv rewritten: grub environment " + filepath.Join(dir, GrubEnvPath) + " is unreadable: "},
	}
	if len(got) != len(want) {
		t.Fatalf("history: %+v", got)
	}
	for i, w := range want {
		g := got[i]
		if g.Time.IsZero() || g.Operation != w.Operation || g.From != w.From || g.To != w.To || g.Result != w.Result ||
			!strings.HasPrefix(g.Detail, w.Detail) || !strings.HasPrefix(g.Error, w.Error) || (w.Error == "") != (g.Error == "") {
			t.Errorf("record %d: %+v, want %+v", i, g, w)
		}
	}
	if !strings.Contains(got[3].Error, "power cut") {
		t.Errorf("the failure's record does not say why: %q", got[3].Error)
	}
}
