// Package integration holds the QEMU tests (behind the integration build tag) that boot
// the deploy ramdisk against blank disks and then boot every deployed image.
package integration
