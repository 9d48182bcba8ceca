package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/engine"
)

// TestReloadRefusals: what reload refuses before it writes anything, each with its exit
// code and a message naming what is wrong.
func TestReloadRefusals(t *testing.T) {
	dir := bootDir(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no url", []string{"reload", "centos", "--boot-dir", dir}, 1, "--url is required"},
		{"tries and no-trial", []string{"reload", "centos", "--url", "/x.tar", "--tries", "2", "--no-trial", "--boot-dir", dir}, 1, "exclude each other"},
		{"too many tries", []string{"reload", "centos", "--url", "/x.tar", "--tries", "11", "--boot-dir", dir}, 1, "want 1 to 10"},
		{"no record", []string{"reload", "centos", "--url", "/x.tar", "--boot-dir", dir}, 3, "provision-record.json"},
		{"no image", []string{"reload", "--url", "/x.tar", "--boot-dir", dir}, 1, "accepts 1 arg"},
		{"dry run without live", []string{"reload", "centos", "--url", "/x.tar", "--dry-run", "--boot-dir", dir}, 1, "go with --live"},
		{"live offline", []string{"reload", "centos", "--url", "/x.tar", "--live", "--device", "/x.img"}, 1, "--device is offline"},
		{"live with tries", []string{"reload", "centos", "--url", "/x.tar", "--live", "--tries", "2", "--boot-dir", dir}, 1, "do not apply"},
		{"live include-var outside var", []string{"reload", "centos", "--url", "/x.tar", "--live", "--include-var", "/etc", "--boot-dir", dir}, 1, "want a path under /var"},
		{"live no record", []string{"reload", "centos", "--url", "/x.tar", "--live", "--boot-dir", dir}, 3, "provision-record.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, "", tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.code, tc.code, r.stderr)
			}
		})
	}
}

// TestListShowsFailedReload: an element a reload left half written is marked in list,
// with the reload's error; one cut short is marked too.
func TestListShowsFailedReload(t *testing.T) {
	dir := bootDir(t)
	bi, err := bootloader.ReadBootInfo(filepath.Join(dir, bootloader.BootInfoPath))
	if err != nil {
		t.Fatal(err)
	}
	bi.Elements[1].State, bi.Elements[1].StateError = bootloader.ElementFailed, "image centos: unexpected EOF"
	bi.Elements[0].State = bootloader.ElementReloading
	data, _ := bi.Encode()
	if err := os.WriteFile(filepath.Join(dir, bootloader.BootInfoPath), data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "", "list", "--boot-dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "FAILED: its last reload failed") || !strings.Contains(r.stdout, "FAILED: a reload was cut short") ||
		!strings.Contains(r.stdout, "reload of 1 (centos) failed: image centos: unexpected EOF") {
		t.Errorf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestPrintLive: a live reload's result shows the counts and bytes of each class, the
// merged files, each restart (a failed one marked), and with a dry run every path.
func TestPrintLive(t *testing.T) {
	plan := &deploy.SyncPlan{
		Entries: []deploy.SyncEntry{
			{Path: "/usr/bin/x", Class: deploy.SyncReplaced, Kind: "file", Bytes: 2048, Reason: "content"},
			{Path: "/etc/app.conf", Class: deploy.SyncMerged, Kind: "file", NewPath: "/etc/app.conf.provisioner-new", Reason: "changed on the node since the last deploy or reload"},
		},
		Totals: map[deploy.SyncClass]deploy.SyncTotal{deploy.SyncReplaced: {Count: 1, Bytes: 2048}, deploy.SyncMerged: {Count: 1, Bytes: 10}},
	}
	res := &engine.LiveReloadResult{
		Element: bootloader.Element{GrubID: 0, OSID: "ubuntu"}, Kernel: "6.8.0-1", Plan: plan,
		Restarts: []engine.ServiceRestart{{Unit: "a.service", Reason: "its program /usr/bin/x was replaced"}, {Unit: "b.service", Reason: "r", Err: errors.New("exit status 1")}},
	}
	var out bytes.Buffer
	printLive(&streams{out: &out, err: &out}, res)
	for _, want := range []string{"reloaded live 0 (ubuntu)", "kernel 6.8.0-1 kept", "replaced      1  2.0 KiB", "merged        1  10 B",
		"merged /etc/app.conf: the node's version kept, the image's written to /etc/app.conf.provisioner-new",
		"restarted a.service: its program /usr/bin/x was replaced", "restart of b.service FAILED (r): exit status 1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "replaced file /usr/bin/x") {
		t.Error("paths listed without --dry-run")
	}
	out.Reset()
	res.DryRun = true
	printLive(&streams{out: &out, err: &out}, res)
	if !strings.Contains(out.String(), "dry run of a live reload") || !strings.Contains(out.String(), "replaced file /usr/bin/x (content)") {
		t.Errorf("dry run:\n%s", out.String())
	}
}
