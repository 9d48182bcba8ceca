// Command mkramdisk builds the provisioner's deploy ramdisk (a development tool, like
// cmd/testimages): a Debian 12 kernel as DIR/vmlinuz and DIR/initramfs.cpio.zst (or
// .gz when the kernel cannot unpack zstd) holding u-root's init, the provisioner,
// busybox, the tools the provisioner runs with their libraries, and kernel modules, and
// DIR/SHA256SUMS listing both (the checksum file of a spec's "ramdisk").
//
//	mkramdisk [-flavour amd64|cloud-amd64] [-out DIR] [-cache DIR] [-go CMD] [-v]
//	mkramdisk -list [FILE]    print the records of FILE (default: the archive in -out)
//
// The kernel and busybox packages are fetched with apt-get download (never installed)
// and cached; the tools must be installed on this machine (scripts/deps.sh ramdisk).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/provisioner/provisioner/initramfs"
	"github.com/provisioner/provisioner/internal/run"
)

func main() {
	if err := mainErr(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkramdisk:", err)
		os.Exit(1)
	}
}

func mainErr(args []string) error {
	fs := flag.NewFlagSet("mkramdisk", flag.ContinueOnError)
	flavour := fs.String("flavour", "amd64", "kernel flavour: amd64 (real machines) or cloud-amd64 (VMs; boots faster in QEMU)")
	out := fs.String("out", "out", "directory to write vmlinuz and the initramfs to")
	cache := fs.String("cache", initramfs.DefaultCacheDir(), "cache of the downloaded packages and unpacked kernels")
	goCmd := fs.String("go", "go", "command that runs the go tool (split at spaces), e.g. ./scripts/go")
	list := fs.Bool("list", false, "print the records of an archive (the argument, or the one in -out) instead of building")
	verbose := fs.Bool("v", false, "log every command run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *list {
		return printList(fs.Args(), *out)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	res, err := initramfs.Build(ctx, initramfs.Options{
		Flavour:  *flavour,
		OutDir:   *out,
		CacheDir: *cache,
		GoCmd:    strings.Fields(*goCmd),
		Run:      run.Exec{Logger: log},
		Log:      log,
	})
	if err != nil {
		return err
	}
	kst, err := os.Stat(res.Kernel)
	if err != nil {
		return err
	}
	fmt.Printf("%s: kernel %s, %.1f MiB\n", res.Kernel, res.KernelVersion, mib(kst.Size()))
	fmt.Printf("%s: %s, %d records, %.1f MiB (limit %d MiB)\n", res.Initramfs, res.Compression, res.Records, mib(res.Size), initramfs.MaxSize>>20)
	fmt.Printf("%s: sha256 of both\n", res.Checksums)
	fmt.Printf("built in %s\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// printList prints the manifest of the archive named by args, or of the one in out.
func printList(args []string, out string) error {
	var path string
	switch len(args) {
	case 0:
		for _, ext := range []string{"zst", "gz"} {
			p := filepath.Join(out, "initramfs.cpio."+ext)
			if _, err := os.Stat(p); err == nil {
				path = p
				break
			}
		}
		if path == "" {
			return errors.New("no initramfs.cpio.zst or .gz in " + out + ": build one first, or name a file")
		}
	case 1:
		path = args[0]
	default:
		return fmt.Errorf("-list takes one file, not %q", args)
	}
	recs, err := initramfs.List(path)
	if err != nil {
		return err
	}
	for _, r := range recs {
		fmt.Println(r)
	}
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
