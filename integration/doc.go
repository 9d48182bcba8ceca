// Package integration will hold the QEMU tests (behind a build tag) that boot the deploy
// ramdisk against blank disks and then boot every deployed image.
package integration
