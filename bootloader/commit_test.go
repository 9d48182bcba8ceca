package bootloader

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/confine"
	"golang.org/x/sys/unix"
)

// TestCommitOrder: with a menu, grubenv is written last; without one, first.
func TestCommitOrder(t *testing.T) {
	h := &HistoryEntry{Operation: "x", Result: "ok"}
	for _, tc := range []struct {
		name string
		s    State
		o    CommitOptions
		want []string
	}{
		{"deploy", State{Menu: []byte("menu"), Info: switchBootInfo(), Env: &Env{}, History: h}, CommitOptions{},
			[]string{"boot/grub/grub.cfg", BootInfoPath, HistoryPath, GrubEnvPath}},
		{"deploy into an image's /boot", State{Menu: []byte("menu"), Info: &BootInfo{GrubDir: "grub"}, Env: &Env{}, History: h}, CommitOptions{},
			[]string{"grub/grub.cfg", BootInfoPath, HistoryPath, "grub/grubenv"}},
		{"switch", State{Info: switchBootInfo(), Env: &Env{}, History: h}, CommitOptions{},
			[]string{GrubEnvPath, BootInfoPath, HistoryPath}},
		{"boot info only", State{Info: switchBootInfo()}, CommitOptions{}, []string{BootInfoPath}},
	} {
		c := &commit{s: tc.s, o: tc.o}
		if got := c.order(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: order %q, want %q", tc.name, got, tc.want)
		}
	}
}

// deployTestState is a new menu for a boot directory writeBootDir made: grub_id 1 the
// default.
func deployTestState() State {
	bi := switchBootInfo()
	bi.CurrentElement = 1
	env := &Env{}
	env.Set("saved_entry", "provisioner-ubuntu")
	return State{
		Menu:    []byte("new menu\n"),
		Info:    bi,
		Env:     env,
		History: &HistoryEntry{Operation: "deploy", To: "ubuntu", Result: "ok"},
	}
}

func openDir(t *testing.T, dir string) *confine.Dir {
	t.Helper()
	d, err := confine.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestCommitPowerCut cuts a deploy's commit before each rename: the files before the cut
// are wholly new, those after wholly old, the boot code ran once grub.cfg was there, and
// the history record is there once boot-info.json is.
func TestCommitPowerCut(t *testing.T) {
	errCut := errors.New("power cut")
	files := []string{"boot/grub/grub.cfg", BootInfoPath, GrubEnvPath}
	for cut, file := range files {
		t.Run(file, func(t *testing.T) {
			dir := writeBootDir(t, switchBootInfo(), defaultEnv())
			os.WriteFile(filepath.Join(dir, "boot/grub/grub.cfg"), []byte("old menu\n"), 0o644)
			old := map[string][]byte{}
			for _, f := range files {
				old[f], _ = os.ReadFile(filepath.Join(dir, f))
			}
			renames := 0
			s := deployTestState()
			err := Commit(context.Background(), openDir(t, dir), s, CommitOptions{
				hook: func(step string) error {
					if step == "rename" {
						if renames++; renames == cut+1 {
							return errCut
						}
					}
					return nil
				},
			})
			var ce *commitError
			if !errors.Is(err, errCut) || !errors.As(err, &ce) || ce.file != file || ce.op != opWrite {
				t.Fatalf("err = %v (%+v), want the cut of %s", err, ce, file)
			}
			wantWritten := files[:cut]
			if cut == 2 {
				wantWritten = []string{files[0], BootInfoPath, HistoryPath}
			}
			if !slices.Equal(ce.written, wantWritten) {
				t.Errorf("written = %q, want %q", ce.written, wantWritten)
			}
			for i, f := range files {
				got, _ := os.ReadFile(filepath.Join(dir, f))
				if isNew := !bytes.Equal(got, old[f]); isNew != (i < cut) {
					t.Errorf("%s new = %v after a cut at %s", f, isNew, file)
				}
			}
			hist, _ := ReadHistory(dir)
			if (len(hist.Entries) == 1) != (cut == 2) {
				t.Errorf("history after a cut at %s: %+v", file, hist)
			}
		})
	}
}

// TestCommitRefusesBeforeWriting: a planted history.jsonl, or a grubenv that does not
// encode, stops the commit before the first write and before the boot code.
func TestCommitRefusesBeforeWriting(t *testing.T) {
	big := &Env{}
	big.Set("x", strings.Repeat("y", EnvSize))
	for _, tc := range []struct {
		name   string
		plant  func(dir string) error
		env    *Env
		op     string
		target error
	}{
		{"FIFO at history.jsonl", func(dir string) error { return unix.Mkfifo(filepath.Join(dir, HistoryPath), 0o644) }, nil, opCheck, confine.ErrUnsafe},
		{"grubenv too large", func(string) error { return nil }, big, opEncode, ErrEnvTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeBootDir(t, switchBootInfo(), defaultEnv())
			if err := tc.plant(dir); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)
			s := deployTestState()
			if tc.env != nil {
				s.Env = tc.env
			}
			err := Commit(context.Background(), openDir(t, dir), s, CommitOptions{
				hook: func(step string) error {
					t.Errorf("a file is written (%s)", step)
					return nil
				},
			})
			var ce *commitError
			if !errors.Is(err, tc.target) || !errors.As(err, &ce) || ce.op != tc.op || len(ce.written) != 0 {
				t.Errorf("err = %v (%+v)", err, ce)
			}
			assertUntouched(t, dir, before)
		})
	}
}

// TestCommitModes: a commit with a menu writes its files with mode 0644, one without keeps
// the mode they had.
func TestCommitModes(t *testing.T) {
	for _, withMenu := range []bool{true, false} {
		dir := writeBootDir(t, switchBootInfo(), defaultEnv())
		for _, f := range []string{GrubEnvPath, BootInfoPath} {
			os.Chmod(filepath.Join(dir, f), 0o600)
		}
		s := deployTestState()
		if !withMenu {
			s.Menu = nil
		}
		if err := Commit(context.Background(), openDir(t, dir), s, CommitOptions{}); err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if withMenu {
			want = 0o644
		}
		for _, f := range []string{GrubEnvPath, BootInfoPath} {
			if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != want {
				t.Errorf("menu %v: %s: %v %v, want mode %v", withMenu, f, fi.Mode(), err, want)
			}
		}
	}
}

// TestDeployState: the grubenv a deploy commits keeps the other variables of one that
// parses, saves the boot image's entry and cancels a pending one-shot entry; an unreadable
// one is replaced.
func TestDeployState(t *testing.T) {
	cfg := Config{Entries: []MenuEntry{{ID: "provisioner-centos"}, {ID: "provisioner-ubuntu"}, {ID: "provisioner-utility"}}, Default: 1}
	bi := switchBootInfo()
	bi.CurrentElement = 1
	for _, tc := range []struct {
		name    string
		old     []byte
		wantEnv string
	}{
		{"kept", mustEncode(t, map[string]string{"saved_entry": "provisioner-centos", "next_entry": "provisioner-utility", "other": "kept"}),
			"saved_entry=provisioner-ubuntu\nother=kept\n"},
		{"an earlier deploy's trial", mustEncode(t, map[string]string{"saved_entry": "provisioner-centos", "trial_entry": "provisioner-utility", "trial_tries": "x", "trial_failed": "provisioner-utility"}),
			"saved_entry=provisioner-ubuntu\n"},
		{"missing", nil, "saved_entry=provisioner-ubuntu\n"},
		{"not a grubenv", []byte("garbage"), "saved_entry=provisioner-ubuntu\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, DefaultGrubDir), 0o755)
			if tc.old != nil {
				os.WriteFile(filepath.Join(dir, GrubEnvPath), tc.old, 0o644)
			}
			s, err := DeployState(openDir(t, dir), cfg, bi)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(s.Menu, Render(cfg)) || s.Info != bi {
				t.Errorf("menu or boot info is not the deploy's")
			}
			var got strings.Builder
			for _, k := range s.Env.Keys() {
				v, _ := s.Env.Get(k)
				got.WriteString(k + "=" + v + "\n")
			}
			if got.String() != tc.wantEnv {
				t.Errorf("grubenv:\n%s\nwant:\n%s", got.String(), tc.wantEnv)
			}
			if h := s.History; h == nil || h.Operation != "deploy" || h.To != "ubuntu" || h.Result != ResultOK || len(h.Images) != len(s.Info.Elements) {
				t.Errorf("history record %+v", s.History)
			}
		})
	}
	bi.CurrentElement = 7
	if _, err := DeployState(openDir(t, t.TempDir()), cfg, bi); err == nil {
		t.Error("a current_element naming no element is accepted")
	}
}

func mustEncode(t *testing.T, vars map[string]string) []byte {
	t.Helper()
	e := &Env{}
	for _, k := range []string{"saved_entry", "next_entry", "trial_entry", "trial_tries", "trial_failed", "other"} {
		if v, ok := vars[k]; ok {
			e.Set(k, v)
		}
	}
	data, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestDeployStateImages: a redeploy over a kept multiboot partition records each image's
// version before and after, and an image the new spec no longer has as removed.
func TestDeployStateImages(t *testing.T) {
	old := switchBootInfo()
	old.Elements[1].Digest = "sha256:u1"
	dir := writeBootDir(t, old, defaultEnv())
	bi := switchBootInfo()
	bi.Elements = bi.Elements[:2]
	bi.Elements[1].ImageName, bi.Elements[1].Digest = "ubuntu-24.04", "sha256:u2"
	cfg := Config{Entries: []MenuEntry{{ID: "provisioner-centos"}, {ID: "provisioner-ubuntu"}}}
	s, err := DeployState(openDir(t, dir), cfg, bi)
	if err != nil {
		t.Fatal(err)
	}
	want := []ImageChange{
		{Name: "centos", From: &ImageVersion{ImageName: "centos-9"}, To: &ImageVersion{ImageName: "centos-9"}},
		{Name: "ubuntu", From: &ImageVersion{ImageName: "ubuntu-22.04", Digest: "sha256:u1"}, To: &ImageVersion{ImageName: "ubuntu-24.04", Digest: "sha256:u2"}},
		{Name: "utility", From: &ImageVersion{ImageName: "debian-12"}},
	}
	if !reflect.DeepEqual(s.History.Images, want) {
		t.Errorf("images %+v\nwant %+v", s.History.Images, want)
	}
}
