package initramfs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/provisioner/provisioner/internal/run"
)

// busyboxPkg is Debian's statically linked busybox: the ramdisk's shell and the small
// utilities the provisioner's shell-script tools (os-prober, xfs_admin) call.
const busyboxPkg = "busybox-static"

// busyboxApplets are linked to /bin/busybox: what POSIX shell scripts such as os-prober
// and linux-boot-prober call, and what a person at the console needs to look around.
// modprobe, insmod, depmod, mke2fs, mkswap, fdisk, xz and friends get no link: busybox's
// versions do less than the real tools (its xz only decompresses, its mke2fs has no -t),
// and a program that looks a tool up in PATH must find the real one or none.
//
// Debian's busybox-static is built with FEATURE_SH_STANDALONE and PREFER_APPLETS: its sh
// runs its own applet for any name it has before looking in PATH, link or not. In the
// console shell `mke2fs` or `xz` is busybox's (type /usr/sbin/mke2fs for the real one).
// The provisioner is not affected (Go looks commands up in PATH), nor are the scripts it
// runs, which call no such names except os-prober's `modprobe <fs>`, which then loads the
// module through busybox's modprobe and modules.dep, as intended.
var busyboxApplets = []string{
	"sh", "ash", "[", "[[", "test", "true", "false", "echo", "printf", "expr", "sleep",
	"cat", "cp", "mv", "rm", "ln", "ls", "mkdir", "rmdir", "touch", "chmod", "chown",
	"readlink", "realpath", "stat", "basename", "dirname", "mktemp", "find", "xargs",
	"grep", "egrep", "fgrep", "sed", "awk", "tr", "cut", "head", "tail", "sort", "uniq",
	"wc", "tee", "seq", "cmp", "diff", "hexdump", "xxd", "od", "strings", "md5sum", "sha256sum",
	"mount", "umount", "sync", "df", "du", "free", "dmesg", "uname", "hostname", "date",
	"id", "env", "pwd", "which", "logger", "ps", "kill", "killall", "pidof", "top",
	"chroot", "dd", "lsmod", "lsscsi", "blockdev",
	"ip", "ifconfig", "route", "ping", "nc", "wget", "nslookup",
	"gzip", "gunzip", "zcat", "tar",
	"vi", "less", "more", "clear", "reboot", "poweroff", "halt",
}

// requiredApplets must be in the busybox binary: without a shell, init has nothing to
// fall back to and os-prober cannot run.
var requiredApplets = []string{"sh"}

// listApplets runs busybox --list (the static binary runs on any x86-64 build host).
func listApplets(ctx context.Context, r run.Runner, busybox string) ([]string, error) {
	res, err := r.Run(ctx, run.Cmd{Argv: []string{busybox, "--list"}})
	if err != nil {
		return nil, fmt.Errorf("initramfs: listing the busybox applets: %w", err)
	}
	var applets []string
	sc := bufio.NewScanner(bytes.NewReader(res.Stdout))
	for sc.Scan() {
		if a := string(bytes.TrimSpace(sc.Bytes())); a != "" {
			applets = append(applets, a)
		}
	}
	return applets, nil
}

// appletLinks returns the applets of wanted to link to busybox: those the binary has
// (available) and no real tool already provides (taken reports a name as taken when
// the ramdisk has a program of that name from its own package, e.g. blkid from
// util-linux). missing lists the wanted applets the binary lacks; an error is returned
// when a required one is among them.
func appletLinks(wanted, available, required []string, taken func(name string) bool) (links, missing []string, err error) {
	for _, a := range wanted {
		switch {
		case !slices.Contains(available, a):
			missing = append(missing, a)
		case !taken(a):
			links = append(links, a)
		}
	}
	for _, r := range required {
		if slices.Contains(missing, r) {
			return nil, nil, fmt.Errorf("initramfs: busybox has no %s applet", r)
		}
	}
	return links, missing, nil
}
