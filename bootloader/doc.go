// Package bootloader installs grub once for every deployed image (BIOS and UEFI),
// discovers each image's kernel, renders one grub.cfg, keeps the default in grubenv and
// writes boot-info.json and the history; switch-default and list work on those files. A
// trial boot (ArmTrial) is counted down by grub.cfg itself in grubenv and rolls back to the
// default by itself; Confirm ends it from inside the system on trial, NoteRollback records
// a rollback grub made.
// Every boot file is read and written inside its boot directory, which an image or a
// tampered disk may have filled (internal/confine). It reads the partition package's plan
// types only, never its apply code.
package bootloader
