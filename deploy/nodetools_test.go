package deploy

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/provisioner/provisioner/internal/confine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// staticProgram builds a tiny Go program with CGO_ENABLED=0, as the ramdisk's provisioner
// is built: a statically linked ELF program.
func staticProgram(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "prog")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", out, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// dynamicProgram is a dynamically linked program of the machine (Debian's coreutils).
func dynamicProgram(t *testing.T) string {
	t.Helper()
	const p = "/bin/true"
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no %s here", p)
	}
	return p
}

func TestCheckNodeTools(t *testing.T) {
	static, dynamic := staticProgram(t), dynamicProgram(t)
	text := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(text, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	asks := []*partition.Image{{Name: "a"}, {Name: "b", NodeTools: true}}
	if err := (&Deployer{NodeToolsBinary: static}).CheckNodeTools(asks); err != nil {
		t.Errorf("static program: %v", err)
	}
	err := (&Deployer{NodeToolsBinary: dynamic}).CheckNodeTools(asks)
	if !errors.Is(err, ErrNotStatic) || !strings.Contains(err.Error(), "image b asks for node_tools: "+dynamic+" is dynamically linked (loader /") {
		t.Errorf("dynamic program: err = %v, want ErrNotStatic naming the image, the program and its loader", err)
	}
	if err := (&Deployer{NodeToolsBinary: text}).CheckNodeTools(asks); !errors.Is(err, ErrNotStatic) || !strings.Contains(err.Error(), "is not an ELF program") {
		t.Errorf("a script: err = %v, want not an ELF program", err)
	}
	// No image asks: the program is not even looked at.
	if err := (&Deployer{NodeToolsBinary: dynamic}).CheckNodeTools(asks[:1]); err != nil {
		t.Errorf("no image asks: %v", err)
	}
	// The bytes installed are the bytes checked.
	prog, _, err := (&Deployer{NodeToolsBinary: static}).readNodeTools()
	if want, _ := os.ReadFile(static); err != nil || !bytes.Equal(prog, want) {
		t.Errorf("readNodeTools: %d bytes, %v; want the %d bytes of the program", len(prog), err, len(want))
	}
	if _, _, err := (&Deployer{NodeToolsBinary: dynamic}).readNodeTools(); !errors.Is(err, ErrNotStatic) {
		t.Errorf("readNodeTools of a dynamic program: err = %v, want ErrNotStatic", err)
	}
}

// imageRoot makes an image tree with /etc, and a host directory beside it standing for
// the machine's own files.
func imageRoot(t *testing.T) (root, host string) {
	t.Helper()
	base := t.TempDir()
	root, host = filepath.Join(base, "root"), filepath.Join(base, "host")
	for _, d := range []string{root + "/etc", root + "/usr", host} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root, host
}

func TestInstallNodeTools(t *testing.T) {
	root, _ := imageRoot(t)
	prog := []byte("\x7fELF the provisioner")
	// Twice: a second install (a reload into a tree that kept them) changes nothing.
	for range 2 {
		if err := installNodeTools(root, prog, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{NodeToolsProgram, prog, 0o755},
		{ConfirmUnitFile, []byte(ConfirmUnit), 0o644},
	} {
		p := filepath.Join(root, f.name)
		b, err := os.ReadFile(p)
		fi, err2 := os.Lstat(p)
		if err != nil || err2 != nil || !bytes.Equal(b, f.data) || fi.Mode() != f.perm {
			t.Errorf("%s: %q (%v), mode %v (%v); want %q, %v", f.name, b, err, fi.Mode(), err2, f.data, f.perm)
			continue
		}
		if st := fi.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && (st.Uid != 0 || st.Gid != 0) {
			t.Errorf("%s: owner %d:%d, want root", f.name, st.Uid, st.Gid)
		}
	}
	if target, err := os.Readlink(filepath.Join(root, ConfirmUnitLink)); err != nil || target != ConfirmUnitFile {
		t.Errorf("%s -> %q (%v), want %s", ConfirmUnitLink, target, err, ConfirmUnitFile)
	}
	for _, line := range []string{"ExecStart=/usr/local/sbin/provisioner confirm --fleetlock-release", "Requires=boot-complete.target", "WantedBy=multi-user.target"} {
		if !strings.Contains(ConfirmUnit, "\n"+line+"\n") {
			t.Errorf("the unit lacks the line %q", line)
		}
	}
}

func TestInstallNodeToolsReplacesPlantedFiles(t *testing.T) {
	root, host := imageRoot(t)
	hostFile := filepath.Join(host, "file")
	if err := os.WriteFile(hostFile, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Symlinks out of the tree at the very names written: replaced, never written through.
	for _, name := range []string{NodeToolsProgram, ConfirmUnitFile, ConfirmUnitLink} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(hostFile, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := installNodeTools(root, []byte("prog"), nil); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(hostFile); err != nil || string(b) != "host" {
		t.Errorf("host file: %q %v", b, err)
	}
	if fi, err := os.Lstat(filepath.Join(root, NodeToolsProgram)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("%s: %v %v, want a regular file", NodeToolsProgram, fi, err)
	}
	if target, err := os.Readlink(filepath.Join(root, ConfirmUnitLink)); err != nil || target != ConfirmUnitFile {
		t.Errorf("%s -> %q (%v)", ConfirmUnitLink, target, err)
	}
}

func TestInstallNodeToolsRefusesPlantedDirLinks(t *testing.T) {
	for _, tt := range []struct {
		dir    string // a directory the image made a symlink
		toHost bool   // the link leads to the host directory; else inside the tree
	}{
		{"usr/local/sbin", true},
		{"usr/local", true},
		{"etc/systemd/system", true},
		{"etc/systemd", false},
		{"etc/systemd/system/multi-user.target.wants", true},
	} {
		t.Run(strings.ReplaceAll(tt.dir, "/", "_"), func(t *testing.T) {
			root, host := imageRoot(t)
			link := filepath.Join(root, tt.dir)
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				t.Fatal(err)
			}
			target := host
			if !tt.toHost {
				target = "/usr"
			}
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			before := treeList(t, root)
			err := installNodeTools(root, []byte("prog"), nil)
			if !errors.Is(err, confine.ErrUnsafe) || !strings.Contains(err.Error(), link+" is a symlink") {
				t.Fatalf("err = %v, want a refusal naming %s", err, link)
			}
			if e, _ := os.ReadDir(host); len(e) != 0 {
				t.Errorf("the host directory holds %d entries", len(e))
			}
			// Refused before anything was written into the image.
			if after := treeList(t, root); !slices.Equal(before, after) {
				t.Errorf("the tree changed:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
}

// treeList lists every path under root (symlinks not followed), sorted.
func treeList(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		out = append(out, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestInstallNodeToolsFleetLock: with a FleetLock server in the spec, the node tools also
// write the node's FleetLock configuration; without one, none.
func TestInstallNodeToolsFleetLock(t *testing.T) {
	root, _ := imageRoot(t)
	if err := installNodeTools(root, []byte("prog"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(root, FleetLockConfigFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s without a server: %v", FleetLockConfigFile, err)
	}
	fl := &schema.NodeFleetLock{URL: "http://fl.example:8080/", Group: "rack-1"}
	if err := installNodeTools(root, []byte("prog"), fl); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, FleetLockConfigFile)
	var got map[string]any
	_, err := toml.DecodeFile(p, &got)
	fi, err2 := os.Lstat(p)
	if err != nil || err2 != nil || fi.Mode() != 0o644 || len(got) != 2 || got["base_url"] != fl.URL || got["group"] != fl.Group {
		t.Errorf("%s: %v (%v), mode %v (%v)", p, got, err, fi.Mode(), err2)
	}
	got = nil
	b, _ := FleetLockConfig(&schema.NodeFleetLock{URL: `http://x/"quoted"`})
	if _, err := toml.Decode(string(b), &got); err != nil || got["base_url"] != `http://x/"quoted"` || strings.Contains(string(b), "group") {
		t.Errorf("config without a group:\n%s\n%v", b, err)
	}
	got = nil
	b, _ = FleetLockConfig(&schema.NodeFleetLock{URL: "http://x/", ID: "rack1-node7"})
	if _, err := toml.Decode(string(b), &got); err != nil || got["id"] != "rack1-node7" || len(got) != 2 {
		t.Errorf("config with an id:\n%s\n%v", b, err)
	}
}
