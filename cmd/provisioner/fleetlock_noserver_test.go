//go:build nofleetlockserver

package main

import (
	"strings"
	"testing"
)

// TestFleetlockNoServer: built with nofleetlockserver, the server's subcommands exist,
// take any flags, and fail saying that the full binary has them; the client's are there.
func TestFleetlockNoServer(t *testing.T) {
	for _, args := range [][]string{
		{"fleetlock", "serve", "--etcd", "http://127.0.0.1:1", "--group", "x=1"},
		{"fleetlock", "status", "--json"},
		{"fleetlock", "release", "n1", "--group", "workers"},
	} {
		var stdout, stderr strings.Builder
		if code := run(args, nil, &stdout, &stderr); code == 0 ||
			!strings.Contains(stderr.String(), "built without the FleetLock server") ||
			!strings.Contains(stderr.String(), "make build") {
			t.Errorf("%v: %d %q %q", args, code, stdout.String(), stderr.String())
		}
	}
	var stdout, stderr strings.Builder
	if code := run([]string{"fleetlock", "lock", "--help"}, nil, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "lock") {
		t.Errorf("fleetlock lock --help: %d %q %q", code, stdout.String(), stderr.String())
	}
}
