package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/provisioner/provisioner/bootloader"
)

// TestMain lets the test binary act as the provisioner when a deploy re-executes itself
// (/proc/self/exe) as the confined os-prober child; without it the child would run the
// whole test suite again. It also removes the binary buildProvisioner built.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == bootloader.ConfinedProberArg {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// built is the provisioner binary the tests that run it as a child process share: it is
// built once per test run.
var built struct {
	once     sync.Once
	dir, bin string
	err      error
	out      []byte
}

// buildProvisioner returns the path of the provisioner binary, built on first use.
func buildProvisioner(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "provisioner-test-bin-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "provisioner")
		built.out, built.err = exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", built.bin, ".").CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("go build: %v\n%s", built.err, built.out)
	}
	return built.bin
}
