// Package bootloader will install grub once onto the multiboot partition (BIOS and UEFI),
// discover each deployed image's kernels, render one grub.cfg, keep the default in
// grubenv and write boot-info.json; switch-default rewrites them atomically. It reads
// the partition package's plan types only (DESIGN.md §2).
package bootloader
