// Command testimages writes small bootable OS images for the demo and for manual tests:
// a Debian cloud kernel with a stage-1 initramfs and busybox, each image printing its
// marker (BOOTED-IMAGE-<NAME>) on the console at boot and powering off.
//
//	testimages -out DIR [NAME ...]    (default names: a b)
//
// Each image is written as DIR/NAME.tar.gz with DIR/NAME.tar.gz.sha256 beside it. The
// kernel and busybox packages are fetched with apt-get download and cached.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/internal/testimage"
)

func main() {
	if err := mainErr(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "testimages:", err)
		os.Exit(1)
	}
}

func mainErr(args []string) error {
	fs := flag.NewFlagSet("testimages", flag.ContinueOnError)
	out := fs.String("out", "out/images", "directory to write the images to")
	cache := fs.String("cache", testimage.DefaultCacheDir(), "cache of the downloaded packages")
	if err := fs.Parse(args); err != nil {
		return err
	}
	names := fs.Args()
	if len(names) == 0 {
		names = []string{"a", "b"}
	}
	ctx := context.Background()
	kit, err := testimage.Prepare(ctx, run.Exec{}, *cache)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, name := range names {
		o := testimage.Options{Name: name, Marker: "BOOTED-IMAGE-" + strings.ToUpper(name), PrettyName: "Tiny test image " + strings.ToUpper(name)}
		path := filepath.Join(*out, name+".tar.gz")
		sum, err := kit.WriteFile(path, o)
		if err != nil {
			return err
		}
		if err := os.WriteFile(path+".sha256", fmt.Appendf(nil, "%x  %s\n", sum, filepath.Base(path)), 0o644); err != nil {
			return err
		}
		fmt.Printf("%s: %s, kernel %s\n", path, o.PrettyName, kit.KernelVersion)
	}
	return nil
}
