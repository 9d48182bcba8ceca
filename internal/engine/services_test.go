package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/run"
)

// fakeProc makes a /proc with the given processes: exe is the link's target, maps the
// maps file's content.
func fakeProc(t *testing.T, procs map[string][2]string) string {
	t.Helper()
	dir := t.TempDir()
	for pid, p := range procs {
		os.MkdirAll(filepath.Join(dir, pid), 0o755)
		if err := os.Symlink(p[0], filepath.Join(dir, pid, "exe")); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, pid, "maps"), []byte(p[1]), 0o644)
	}
	return dir
}

func TestServicesRestart(t *testing.T) {
	proc := fakeProc(t, map[string][2]string{
		"100": {"/usr/sbin/app (deleted)", ""},
		"200": {"/usr/bin/worker", "7f00-7f10 r-xp 00000000 fd:00 123 /usr/lib/libx.so.1 (deleted)\n7f20-7f30 rw-s 00000000 00:01 9 /memfd:buf (deleted)\n"},
		"300": {"/usr/bin/web", ""},
		"400": {"/usr/bin/calm", "7f00-7f10 r-xp 00000000 fd:00 9 /usr/lib/other.so (deleted)\n"},
		"500": {"/usr/bin/dbus-daemon (deleted)", ""},
		"600": {"/usr/sbin/bad (deleted)", ""},
	})
	f := &run.Fake{Handler: func(c run.Call) (run.Result, error) {
		switch c.Argv[1] {
		case "list-units":
			return run.Result{Stdout: []byte("app.service loaded active running App\nworker.service loaded active running W\nweb.service loaded active running Web\ncalm.service loaded active running C\ndbus.service loaded active running D-Bus\nbad.service loaded active running Bad\n")}, nil
		case "show":
			return run.Result{Stdout: []byte(strings.Join([]string{
				"Id=app.service\nMainPID=100\nFragmentPath=/usr/lib/systemd/system/app.service\nDropInPaths=",
				"Id=worker.service\nMainPID=200\nFragmentPath=/usr/lib/systemd/system/worker.service\nDropInPaths=",
				"Id=web.service\nMainPID=300\nFragmentPath=/usr/lib/systemd/system/web.service\nDropInPaths=/etc/systemd/system/web.service.d/x.conf",
				"Id=calm.service\nMainPID=400\nFragmentPath=/usr/lib/systemd/system/calm.service\nDropInPaths=",
				"Id=dbus.service\nMainPID=500\nFragmentPath=/usr/lib/systemd/system/dbus.service\nDropInPaths=",
				"Id=bad.service\nMainPID=600\nFragmentPath=/usr/lib/systemd/system/bad.service\nDropInPaths=",
			}, "\n\n") + "\n")}, nil
		case "restart":
			if c.Argv[3] == "bad.service" {
				return run.Result{}, errors.New("exit status 1")
			}
		}
		return run.Result{}, nil
	}}
	s := &services{run: f, procDir: proc, self: map[int]bool{}, changed: map[string]bool{
		"/usr/lib/libx.so.1": true, "/etc/systemd/system/web.service.d/x.conf": true,
	}}
	done, skipped, err := s.restartAll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var units []string
	for _, r := range done {
		units = append(units, r.Unit)
		if (r.Err != nil) != (r.Unit == "bad.service") {
			t.Errorf("%s: error %v", r.Unit, r.Err)
		}
	}
	if want := []string{"app.service", "worker.service", "web.service", "bad.service"}; !reflect.DeepEqual(units, want) {
		t.Errorf("restarted %v, want %v", units, want)
	}
	if len(skipped) != 1 || skipped[0].Unit != "dbus.service" {
		t.Errorf("skipped: %+v", skipped)
	}
	if done[0].Reason != "its program /usr/sbin/app was replaced" || !strings.Contains(done[1].Reason, "/usr/lib/libx.so.1") || !strings.Contains(done[2].Reason, "x.conf changed") {
		t.Errorf("reasons: %+v", done)
	}
	cmds := f.Commands()
	if cmds[0] != "systemctl daemon-reexec" || !strings.HasPrefix(cmds[1], "systemctl list-units") {
		t.Errorf("commands: %v", cmds)
	}
}

func TestServicesReexecFails(t *testing.T) {
	f := &run.Fake{Handler: func(c run.Call) (run.Result, error) { return run.Result{}, errors.New("boom") }}
	s := &services{run: f, procDir: t.TempDir()}
	if _, _, err := s.restartAll(context.Background()); err == nil || !strings.Contains(err.Error(), "daemon-reexec") {
		t.Errorf("err: %v", err)
	}
	if len(f.Calls()) != 1 {
		t.Errorf("calls after a failed re-exec: %v", f.Commands())
	}
}
