// Command provisioner validates provision.json documents, plans disk layouts and (in
// the deploy ramdisk) partitions disks, deploys OS images and installs one grub for them.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
