package bootloader

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tree writes files (content "x" unless given) under a new temporary root.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if content == "" {
			content = "x"
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestProbeRoot(t *testing.T) {
	deb := "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n"
	tests := []struct {
		name  string
		files map[string]string
		want  Kernel
	}{
		{"numeric sort 9 vs 10", map[string]string{
			"boot/vmlinuz-6.1.0-9-amd64": "", "boot/vmlinuz-6.1.0-10-amd64": "",
			"boot/initrd.img-6.1.0-9-amd64": "", "boot/initrd.img-6.1.0-10-amd64": "",
			"etc/os-release": deb,
		}, Kernel{"/boot/vmlinuz-6.1.0-10-amd64", "/boot/initrd.img-6.1.0-10-amd64", "6.1.0-10-amd64", "Debian GNU/Linux 12 (bookworm)"}},
		{"5.10 vs 6.1", map[string]string{
			"boot/vmlinuz-5.10.0-30-amd64": "", "boot/vmlinuz-6.1.0-1-amd64": "",
		}, Kernel{"/boot/vmlinuz-6.1.0-1-amd64", "", "6.1.0-1-amd64", "Linux"}},
		{"initramfs-V.img", map[string]string{
			"boot/vmlinuz-5.14.0-362.el9.x86_64": "", "boot/initramfs-5.14.0-362.el9.x86_64.img": "",
			"usr/lib/os-release": "NAME=\"Rocky Linux\"\nPRETTY_NAME=\"Rocky Linux 9.3 (Blue Onyx)\"\n",
		}, Kernel{"/boot/vmlinuz-5.14.0-362.el9.x86_64", "/boot/initramfs-5.14.0-362.el9.x86_64.img", "5.14.0-362.el9.x86_64", "Rocky Linux 9.3 (Blue Onyx)"}},
		{"initrd-V.img", map[string]string{
			"boot/vmlinuz-6.4.0": "", "boot/initrd-6.4.0.img": "", "etc/os-release": "NAME=openSUSE\n",
		}, Kernel{"/boot/vmlinuz-6.4.0", "/boot/initrd-6.4.0.img", "6.4.0", "openSUSE"}},
		{"initrd-V and vmlinux", map[string]string{
			"boot/vmlinux-6.4.0": "", "boot/initrd-6.4.0": "", "etc/os-release": "ID=foo\n",
		}, Kernel{"/boot/vmlinux-6.4.0", "/boot/initrd-6.4.0", "6.4.0", "Linux"}},
		{"old bak rescue ignored", map[string]string{
			"boot/vmlinuz-5.10.0": "", "boot/vmlinuz-6.1.0.old": "", "boot/vmlinuz-7.0.bak": "",
			"boot/vmlinuz-0-rescue-0123abcd": "", "boot/initrd.img-5.10.0": "",
		}, Kernel{"/boot/vmlinuz-5.10.0", "/boot/initrd.img-5.10.0", "5.10.0", "Linux"}},
		{"rescue only", map[string]string{
			"boot/vmlinuz-0-rescue-0123abcd": "", "boot/initramfs-0-rescue-0123abcd.img": "",
		}, Kernel{"/boot/vmlinuz-0-rescue-0123abcd", "/boot/initramfs-0-rescue-0123abcd.img", "0-rescue-0123abcd", "Linux"}},
		{"etc os-release wins, quotes and control chars", map[string]string{
			"boot/vmlinuz-1": "", "etc/os-release": "PRETTY_NAME='It''s \"odd\"'\n",
			"usr/lib/os-release": "PRETTY_NAME=Other\n",
		}, Kernel{"/boot/vmlinuz-1", "", "1", "It''s \"odd\""}},
		{"escaped and newline-free", map[string]string{
			"boot/vmlinuz-1": "", "etc/os-release": "# comment\nPRETTY_NAME=\"A \\\"q\\\" \x1b[31m B\"\n",
		}, Kernel{"/boot/vmlinuz-1", "", "1", "A \"q\" [31m B"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ProbeRoot(tree(t, tc.files))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestProbeRootSymlinks(t *testing.T) {
	root := tree(t, map[string]string{
		"boot/vmlinuz-6.1.0-56-cloud-amd64":    "",
		"boot/initrd.img-6.1.0-56-cloud-amd64": "",
		"usr/lib/os-release":                   "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
	})
	// Debian's own layout: /boot/vmlinuz and /etc/os-release are relative symlinks.
	for link, target := range map[string]string{
		"boot/vmlinuz":    "vmlinuz-6.1.0-56-cloud-amd64",
		"boot/initrd.img": "initrd.img-6.1.0-56-cloud-amd64",
		"etc/os-release":  "../usr/lib/os-release",
		// Hostile: newest by version, but it points out of the tree.
		"boot/vmlinuz-9":        "/etc/shadow",
		"boot/vmlinuz-10":       "../../../../../../../../etc/passwd",
		"boot/initrd.img-6.1.0": "/etc/shadow",
	} {
		p := filepath.Join(root, link)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ProbeRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	want := Kernel{"/boot/vmlinuz-6.1.0-56-cloud-amd64", "/boot/initrd.img-6.1.0-56-cloud-amd64", "6.1.0-56-cloud-amd64", "Debian GNU/Linux 12 (bookworm)"}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	// An os-release pointing outside the root is not read.
	hostile := tree(t, map[string]string{"boot/vmlinuz-1": ""})
	outside := filepath.Join(t.TempDir(), "os-release")
	os.WriteFile(outside, []byte("PRETTY_NAME=Outside\n"), 0o644)
	os.MkdirAll(filepath.Join(hostile, "etc"), 0o755)
	os.Symlink(outside, filepath.Join(hostile, "etc/os-release"))
	if got, err := ProbeRoot(hostile); err != nil || got.OSName != "Linux" {
		t.Errorf("os-release outside root: got %+v, %v; want OSName Linux", got, err)
	}
}

func TestProbeRootNoKernel(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"empty boot":    {"boot/config-6.1.0": "", "boot/vmlinuz": ""},
		"only escaping": {},
	} {
		t.Run(name, func(t *testing.T) {
			root := tree(t, files)
			if name == "only escaping" {
				os.Symlink("/etc/shadow", filepath.Join(root, "boot/vmlinuz-9"))
			}
			_, err := ProbeRoot(root)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(root, "boot")) {
				t.Errorf("err = %v, want one naming %s/boot", err, root)
			}
		})
	}
	root := t.TempDir()
	if _, err := ProbeRoot(root); err == nil || !strings.Contains(err.Error(), filepath.Join(root, "boot")) {
		t.Errorf("no boot dir: err = %v", err)
	}
}

func TestVerCmp(t *testing.T) {
	// Each is older than the next, as `sort -V` orders them.
	order := []string{"5.4", "5.10.0-30-amd64", "6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-10-amd64a", "6.1.10", "6.2~rc1", "6.2", "6.10"}
	for i := range order {
		for j := range order {
			c := verCmp(order[i], order[j])
			if (i < j && c >= 0) || (i > j && c <= 0) || (i == j && c != 0) {
				t.Errorf("verCmp(%q, %q) = %d", order[i], order[j], c)
			}
		}
	}
}
