// Package initramfs will build the deploy ramdisk (u-root init, the provisioner binary
// and the external tools it runs) on the build host. Runtime code never imports it.
package initramfs
