package engine

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/deploy"
)

// staticProgram builds a tiny Go program with CGO_ENABLED=0: statically linked, as the
// ramdisk's provisioner is.
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

// TestDeployNodeTools deploys alpha with node_tools naming a FleetLock server: its root
// holds the program, the enabled confirm unit and the FleetLock configuration; beta,
// which did not ask, holds none of them.
func TestDeployNodeTools(t *testing.T) {
	c := newDeployCase(t)
	prog := staticProgram(t)
	res, img, err := c.deployWith(t, deployDoc(c.srv.URL, `, "node_tools": {"fleetlock": {"url": "http://fl.example:8080", "group": "workers"}}`, ""), func(o *DeployOptions) {
		o.NodeToolsBinary = prog
	})
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(prog)
	if err != nil {
		t.Fatal(err)
	}
	l := res.Layout
	for _, im := range l.Images[:2] {
		withPartition(t, img, l.Disks[0], findFS(l, im.RootUUID).Number, func(t *testing.T, mnt string) {
			b, err := os.ReadFile(filepath.Join(mnt, deploy.NodeToolsProgram))
			unit, err2 := os.ReadFile(filepath.Join(mnt, deploy.ConfirmUnitFile))
			link, err3 := os.Readlink(filepath.Join(mnt, deploy.ConfirmUnitLink))
			conf, err4 := os.ReadFile(filepath.Join(mnt, deploy.FleetLockConfigFile))
			if !im.NodeTools {
				if err == nil || err2 == nil || err3 == nil || err4 == nil {
					t.Errorf("image %s did not ask for node tools, yet holds some", im.Name)
				}
				return
			}
			fi, _ := os.Stat(filepath.Join(mnt, deploy.NodeToolsProgram))
			if err != nil || !bytes.Equal(b, want) || fi.Mode().Perm() != 0o755 {
				t.Errorf("image %s: %s is %d bytes (%v), want the %d of the program, mode 0755", im.Name, deploy.NodeToolsProgram, len(b), err, len(want))
			}
			if err2 != nil || string(unit) != deploy.ConfirmUnit || err3 != nil || link != deploy.ConfirmUnitFile {
				t.Errorf("image %s: unit %v, link -> %q (%v)", im.Name, err2, link, err3)
			}
			if err4 != nil || !strings.Contains(string(conf), "\nbase_url = \"http://fl.example:8080\"\ngroup = \"workers\"\n") {
				t.Errorf("image %s: %s: %v\n%s", im.Name, deploy.FleetLockConfigFile, err4, conf)
			}
		})
	}
}

// TestDeployNodeToolsRefusesDynamic: a dynamically linked program is refused before any
// write, as a fault of the environment (exit 3).
func TestDeployNodeToolsRefusesDynamic(t *testing.T) {
	c := newDeployCase(t)
	const dynamic = "/bin/true"
	if _, err := os.Stat(dynamic); err != nil {
		t.Skipf("no %s here", dynamic)
	}
	_, img, err := c.deployWith(t, deployDoc(c.srv.URL, `, "node_tools": {"fleetlock": {"url": "http://fl.example:8080", "group": "workers"}}`, ""), func(o *DeployOptions) {
		o.NodeToolsBinary = dynamic
	})
	if ExitCode(err) != ExitEnvironment || !strings.Contains(err.Error(), "image alpha asks for node_tools: /bin/true is dynamically linked") {
		t.Fatalf("err = %v (exit %d), want exit %d naming the image and the program", err, ExitCode(err), ExitEnvironment)
	}
	if n := c.srv.requests.Load(); n != 0 {
		t.Errorf("%d image requests before the refusal", n)
	}
	// No partition table: the first MiB (protective MBR, primary GPT) is zeros, if the
	// file exists at all.
	if f, err := os.Open(img); err == nil {
		defer f.Close()
		head := make([]byte, 1<<20)
		n, _ := f.Read(head)
		if len(bytes.Trim(head[:n], "\x00")) > 0 {
			t.Errorf("%s was written", img)
		}
	}
}
