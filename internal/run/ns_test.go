package run

import (
	"context"
	"io"
	"os"
	"testing"
)

// TestExecMountNamespace checks that MountNamespace gives the program a mount namespace
// of its own, with Run and with Stream, and that without it the program shares ours.
func TestExecMountNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("CLONE_NEWNS needs root")
	}
	const link = "/proc/self/ns/mnt"
	ours, err := os.Readlink(link)
	if err != nil {
		t.Skipf("no mount namespace link: %v", err)
	}
	ctx := context.Background()

	res, err := Exec{}.Run(ctx, helper("readlink", link))
	if err != nil || string(res.Stdout) != ours {
		t.Errorf("without MountNamespace: %q, %v; want our namespace %q", res.Stdout, err, ours)
	}

	cmd := helper("readlink", link)
	cmd.MountNamespace = true
	res, err = Exec{}.Run(ctx, cmd)
	if err != nil {
		t.Fatalf("with MountNamespace: %v", err)
	}
	if got := string(res.Stdout); got == "" || got == ours {
		t.Errorf("with MountNamespace the program's namespace is %q, ours %q: want a new one", got, ours)
	}

	rc, err := Exec{}.Stream(ctx, cmd)
	if err != nil {
		t.Fatalf("Stream with MountNamespace: %v", err)
	}
	out, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("Stream with MountNamespace: %v", err)
	}
	if got := string(out); got == "" || got == ours {
		t.Errorf("Stream with MountNamespace: the program's namespace is %q, ours %q: want a new one", got, ours)
	}
}

// TestFakeRecordsMountNamespace checks that a test can see which calls asked for a
// namespace.
func TestFakeRecordsMountNamespace(t *testing.T) {
	f := &Fake{}
	ctx := context.Background()
	if _, err := f.Run(ctx, Cmd{Argv: []string{"os-prober"}, MountNamespace: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Run(ctx, Cmd{Argv: []string{"blkid"}}); err != nil {
		t.Fatal(err)
	}
	calls := f.Calls()
	if len(calls) != 2 || !calls[0].MountNamespace || calls[1].MountNamespace {
		t.Errorf("calls: %+v", calls)
	}
	if got := f.Commands(); len(got) != 2 || got[0] != "os-prober" {
		t.Errorf("commands: %q", got)
	}
}

func TestLookPath(t *testing.T) {
	if p, err := LookPath(helperExe); err != nil || p != helperExe {
		t.Errorf("LookPath(%s) = %q, %v", helperExe, p, err)
	}
	if _, err := LookPath("provisioner-no-such-program"); err == nil {
		t.Error("LookPath found a program that does not exist")
	}
}
