//go:build integration

package integration

import (
	"crypto/sha256"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// fakeSystemctl stands in for systemd's systemctl in the tiny images, which have no
// systemd: it keeps one running service, demo.service, whose main process is
// /usr/local/bin/sleep with its PID in /run/demo.pid, and logs every call. What the live
// reload decides (which service runs a replaced program) and the calls it makes are the
// provisioner's own; only the service manager answering them is this script.
const fakeSystemctl = `#!/bin/sh
echo "systemctl $*" >>/tmp/systemctl.log
case "$1" in
daemon-reexec) ;;
list-units) echo "demo.service loaded active running Demo sleeper" ;;
show) printf 'Id=demo.service\nMainPID=%s\nFragmentPath=/etc/systemd/system/demo.service\nDropInPaths=\n\n' "$(cat /run/demo.pid)" ;;
restart)
	kill "$(cat /run/demo.pid)"
	/usr/local/bin/sleep 100000 </dev/null >/dev/null 2>&1 &
	echo $! >/run/demo.pid ;;
esac
`

// liveScript runs in A: it starts the service, reloads tiny-a live from url, and prints
// what a test checks: the exit code, the systemctl calls, a2's file, and the service's
// old and new processes.
func liveScript(url string, sum [32]byte) string {
	return fmt.Sprintf(`mount -o remount,rw /
mkdir -p /run/systemd/system /tmp/bin
cat >/tmp/bin/systemctl <<'EOF'
%sEOF
chmod 755 /tmp/bin/systemctl
export PATH=/tmp/bin:$PATH
/usr/local/bin/sleep 100000 </dev/null >/dev/null 2>&1 &
echo $! >/run/demo.pid
OLD=$(cat /run/demo.pid)
echo "OLD-EXE $(readlink /proc/$OLD/exe)"
provisioner reload tiny-a --url %s --checksum sha256:%x --live
echo "LIVE-RC=$?"
cat /tmp/systemctl.log
echo "A2-RELEASE $(cat /etc/a2-release)"
NEW=$(cat /run/demo.pid)
[ "$NEW" != "$OLD" ] && ! [ -e /proc/$OLD ] && echo "SERVICE-RESTARTED"
echo "NEW-EXE $(readlink /proc/$NEW/exe)"
provisioner list`, fakeSystemctl, url, sum)
}

// TestScenarioReloadLive reloads the running root of A, on Bareon's two-image disk, live
// with a2: the same kernel, other files. Without a reboot the new files are there and the
// service whose program was replaced runs the new one (the old process was restarted,
// through systemctl); the next boot still boots tiny-a, now with a2's files. One deploy
// (about 25 to 75 s under TCG) and 2 boots, about 2 minutes.
func TestScenarioReloadLive(t *testing.T) {
	needSuite(t)
	c := newConductor(t)
	disk := sparse(t, 2<<30)
	deploy(t, c, oneDiskSpec(c, "bios", "clean", false), disk)
	d := []string{disk}

	log := bootNet(t, d, nil, false, liveScript(c.GuestURL("a2.tar.gz"), sha256.Sum256(images["a2.tar.gz"])))
	if marker(log) != "BOOTED-IMAGE-A" {
		t.Fatalf("booted %q, want A", marker(log))
	}
	out := cmdOutput(log)
	t.Logf("the live reload in A:\n%s", out)
	for _, want := range []string{"LIVE-RC=0", "systemctl daemon-reexec", "systemctl restart -- demo.service", "A2-RELEASE tiny a2", "SERVICE-RESTARTED",
		"OLD-EXE /usr/local/bin/sleep\n", "NEW-EXE /usr/local/bin/sleep\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("the live reload in A lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^0\s+tiny-a\s.*default, booted now`).MatchString(out) {
		t.Errorf("list after the live reload (want tiny-a the default, booted):\n%s", out)
	}
	log = boot(t, d, false, "provisioner list; provisioner history")
	expectBoot(t, log, "BOOTED-IMAGE-A2")
	if out := cmdOutput(log); !regexp.MustCompile(`(?m)^0\s+tiny-a\s.*default, booted now`).MatchString(out) || !strings.Contains(out, "reload-live") {
		t.Errorf("list and history after the next boot (want tiny-a booted, the live reload in the history):\n%s", out)
	}
}
