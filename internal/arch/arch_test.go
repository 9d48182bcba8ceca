package arch

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/provisioner/provisioner"

// allowed lists, for each project package (prefix match), the project packages it may
// import directly. Anything not listed may import nothing of ours. Third-party imports
// are checked separately for the packages whose third-party dependencies are fixed.
var allowed = map[string][]string{
	// The CLI parses flags and prints: the engine does the work and classifies errors,
	// bootflow wires the ramdisk and the agent; schema, partition and bootloader provide
	// the documents it prints (problems, layouts, boot entries).
	"cmd/provisioner": {"internal/engine", "internal/bootflow", "internal/fleetlock", "schema", "partition", "bootloader"},
	// QEMU runs and the conductor side, for the demo and the integration tests.
	"internal/vmrun": {"internal/run", "internal/agent"},
	// The ramdisk's boot program: the agent, the engine's events, power actions.
	"internal/bootflow": {"internal/agent", "internal/engine", "deploy", "schema", "bootloader", "partition", "internal/disk", "internal/run"},
	// make demo's driver: builds the ramdisk and images, plays the conductor, runs QEMU.
	"cmd/demo": {"initramfs", "internal/testimage", "internal/vmrun", "internal/run", "internal/engine", "internal/agent"},
	// The demo's image builder (a development tool, not part of the provisioner).
	"cmd/testimages": {"internal/testimage", "internal/run"},
	// The deploy ramdisk builder (a development tool like cmd/testimages).
	"cmd/mkramdisk":   {"initramfs", "internal/run"},
	"internal/engine": {"schema", "partition", "deploy", "bootloader", "internal/"},
	"internal/agent":  {"internal/engine", "schema", "partition", "bootloader", "deploy", "internal/"},
	"partition":       {"schema", "internal/run", "internal/disk"},
	"deploy":          {"partition", "schema", "internal/run", "internal/disk", "internal/confine"},
	"bootloader":      {"partition", "schema", "internal/run", "internal/disk", "internal/confine"},
	"internal/disk":   {"internal/run"},
	// File access confined to an untrusted tree (an image root, a boot directory).
	"internal/confine": {},
	// The FleetLock protocol, client, node identity and HTTP server stand alone: the
	// commands wire them to the node's reboots. The server's etcd store is its own
	// package, so that binaries without the server link no etcd client (see
	// TestNoEtcdInSmallBinary).
	"internal/fleetlock":           {},
	"internal/fleetlock/etcdstore": {"internal/fleetlock"},
	// Starts real etcd clusters for tests (never imported by runtime code).
	"internal/fleetlock/etcdtest": {"internal/run"},
	// Builds bootable test images (kernel and busybox from Debian packages) for tests only.
	"internal/testimage": {"internal/run", "internal/deb", "internal/elfdeps"},
	// Reads .deb files and asks apt for them (build host only).
	"internal/deb": {"internal/run"},
	"internal/run": {},
	// Medians of repeated timings, for the tests that compare two ways of doing a thing.
	"internal/timing": {},
	"schema":          {},
	"initramfs":       {"internal/run", "internal/deb", "internal/elfdeps"},
	// Finds a host program's loader and libraries by reading ELF headers (build host only).
	"internal/elfdeps": {},
	"integration":      {"cmd/", "internal/", "schema", "partition", "deploy", "bootloader", "initramfs"},
	"examples":         {"schema", "partition", "internal/engine"},
	"internal/arch":    {},
	// Synthetic .deb files for the tests of internal/deb and internal/testimage; the
	// longest prefix wins, so "internal/deb" does not cover it.
	"internal/deb/debtest": {},
}

// thirdParty restricts non-project, non-stdlib imports where the choice is fixed: the
// schema package uses one JSON Schema validator, and internal/run only the standard library.
var thirdParty = map[string][]string{
	"schema":       {"github.com/santhosh-tekuri/jsonschema/v6", "golang.org/x/text"},
	"internal/run": {},
	// No database client: the server reaches etcd through the Store interface.
	"internal/fleetlock": {"github.com/BurntSushi/toml"},
}

type pkg struct {
	path    string
	imports []string
}

// listPackages lists every package of the module with its direct, non-test imports.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goBin, "list", "-f", "{{.ImportPath}} {{.Imports}}", module+"/...")
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(line))
		pkgs = append(pkgs, pkg{path: fields[0], imports: fields[1:]})
	}
	return pkgs
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// ruleFor returns the longest rule prefix that covers rel ("cmd/" covers
// "cmd/provisioner", "partition" covers only "partition" and "partition/...").
func ruleFor(rel string, rules map[string][]string) (string, []string, bool) {
	best, found := "", false
	for prefix := range rules {
		if covers(prefix, rel) && (!found || len(prefix) > len(best)) {
			best, found = prefix, true
		}
	}
	return best, rules[best], found
}

func covers(prefix, path string) bool {
	p := strings.TrimSuffix(prefix, "/")
	return path == p || strings.HasPrefix(path, p+"/")
}

func coveredBy(path string, list []string) bool {
	for _, a := range list {
		if covers(a, path) {
			return true
		}
	}
	return false
}

func TestImportDirection(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.path, module), "/")
		prefix, allow, ok := ruleFor(rel, allowed)
		if !ok {
			t.Errorf("package %s has no import rule in internal/arch: add one", rel)
			continue
		}
		tpAllow, pinned := thirdParty[prefix]
		for _, imp := range p.imports {
			switch {
			case strings.HasPrefix(imp, module+"/"):
				dep := strings.TrimPrefix(imp, module+"/")
				if !covers(prefix, dep) && !coveredBy(dep, allow) {
					t.Errorf("%s imports %s: not allowed by the import rules", rel, dep)
				}
			case pinned && strings.Contains(strings.SplitN(imp, "/", 2)[0], "."):
				if !coveredBy(imp, tpAllow) {
					t.Errorf("%s imports %s: its third-party dependencies are limited to %v", rel, imp, tpAllow)
				}
			}
		}
	}
}

// TestNoEtcdInSmallBinary keeps etcd's client and gRPC (about 12 MB) out of package
// fleetlock and out of the provisioner built with the tag nofleetlockserver, the binary
// of the deploy ramdisk, of the node tools and of the integration images.
func TestNoEtcdInSmallBinary(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, args := range [][]string{
		{"list", "-deps", "./internal/fleetlock"},
		{"list", "-deps", "-tags", "nofleetlockserver", "./cmd/provisioner"},
	} {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = repoRoot(t)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go %v: %v", args, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "go.etcd.io/") || strings.HasPrefix(dep, "google.golang.org/grpc") {
				t.Errorf("go %v: depends on %s", strings.Join(args, " "), dep)
			}
		}
	}
}

// TestOnlyRunExecutes keeps os/exec out of runtime code: only internal/run starts
// programs (argv only, captured stderr, fakeable). Tests, integration and initramfs
// (build-host only) may.
func TestOnlyRunExecutes(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.path, module), "/")
		if rel == "internal/run" || strings.HasPrefix(rel, "integration") || strings.HasPrefix(rel, "initramfs") || rel == "internal/arch" {
			continue
		}
		for _, imp := range p.imports {
			if imp == "os/exec" {
				t.Errorf("%s imports os/exec: run programs through internal/run", rel)
			}
		}
	}
}

func TestGofmt(t *testing.T) {
	gofmt := filepath.Join(runtime.GOROOT(), "bin", "gofmt")
	cmd := exec.Command(gofmt, "-l", ".")
	cmd.Dir = repoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gofmt: %v: %s", err, stderr.String())
	}
	if files := strings.TrimSpace(string(out)); files != "" {
		t.Errorf("gofmt would change:\n%s", files)
	}
}
