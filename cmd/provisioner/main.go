// Command provisioner validates provision.json documents, plans disk layouts and (in
// the deploy ramdisk) partitions disks, deploys OS images and installs one grub for them.
package main

import (
	"context"
	"os"
)

func main() {
	ctx, stop := handleSignals(context.Background(), os.Stderr, os.Exit)
	code := runContext(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
