package bootflow

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/u-root/u-root/pkg/boot/kexec"
	"golang.org/x/sys/unix"
)

// Power performs an after action on this machine: reboot and poweroff through
// reboot(2) after syncing, kexec into the default entry of bi, none does nothing. It only
// returns on failure (or for none).
func Power(ctx context.Context, r run.Runner, action string, bi *bootloader.BootInfo) error {
	unix.Sync()
	switch action {
	case AfterNone:
		return nil
	case AfterReboot:
		return os.NewSyscallError("reboot", unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART))
	case AfterPoweroff:
		return os.NewSyscallError("poweroff", unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF))
	case AfterKexec:
		if err := LoadDefault(ctx, r, bi); err != nil {
			return err
		}
		return os.NewSyscallError("kexec reboot", kexec.Reboot())
	}
	return fmt.Errorf("unknown power action %q", action)
}

// KexecTarget is what kexec boots: the kernel and initrd on one filesystem, and the
// command line, all from boot-info.json.
type KexecTarget struct {
	FSUUID         string
	Kernel, Initrd string // paths on that filesystem
	Cmdline        string
}

// DefaultTarget picks the entry grub would boot next (a pending one-shot entry, else
// the default) and says where its kernel is: on its /boot volume when it has one, else
// on its root.
func DefaultTarget(bi *bootloader.BootInfo) (KexecTarget, error) {
	if bi == nil {
		return KexecTarget{}, errors.New("kexec: no boot info (nothing deployed)")
	}
	id := bi.CurrentElement
	if bi.PendingOnce != nil {
		id = *bi.PendingOnce
	}
	var e *bootloader.Element
	for i := range bi.Elements {
		if bi.Elements[i].GrubID == id {
			e = &bi.Elements[i]
		}
	}
	if e == nil || e.Kernel == "" {
		return KexecTarget{}, fmt.Errorf("kexec: boot info has no kernel for grub_id %d", id)
	}
	t := KexecTarget{FSUUID: e.Filesystems["/"], Kernel: e.Kernel, Initrd: e.Initrd, Cmdline: e.Cmdline}
	if boot := e.Filesystems["/boot"]; boot != "" && strings.HasPrefix(e.Kernel, "/boot/") {
		t.FSUUID = boot
		t.Kernel = strings.TrimPrefix(e.Kernel, "/boot")
		if t.Initrd != "" {
			t.Initrd = strings.TrimPrefix(t.Initrd, "/boot")
		}
	}
	if t.FSUUID == "" {
		return KexecTarget{}, fmt.Errorf("kexec: boot info has no filesystem for %s of %s", e.Kernel, e.OSID)
	}
	return t, nil
}

// LoadDefault loads the default entry's kernel for kexec: it finds the filesystem by its
// UUID, mounts it read-only and privately, and hands kernel, initrd and command line to
// kexec_file_load.
func LoadDefault(ctx context.Context, r run.Runner, bi *bootloader.BootInfo) error {
	t, err := DefaultTarget(bi)
	if err != nil {
		return err
	}
	res, err := r.Run(ctx, run.Cmd{Argv: []string{"blkid", "-U", t.FSUUID}})
	if err != nil {
		return fmt.Errorf("kexec: finding the filesystem %s: %w", t.FSUUID, err)
	}
	dev := strings.TrimSpace(string(res.Stdout))
	res, err = r.Run(ctx, run.Cmd{Argv: []string{"blkid", "-p", "-o", "value", "-s", "TYPE", dev}})
	if err != nil {
		return fmt.Errorf("kexec: probing %s: %w", dev, err)
	}
	mnt, err := os.MkdirTemp("", "provisioner-kexec-")
	if err != nil {
		return fmt.Errorf("kexec: %w", err)
	}
	defer os.Remove(mnt)
	if err := disk.MountPrivate(ctx, dev, mnt, strings.TrimSpace(string(res.Stdout)), false); err != nil {
		return fmt.Errorf("kexec: %w", err)
	}
	defer disk.Unmount(context.WithoutCancel(ctx), mnt)
	kernel, initrd := path.Join(mnt, t.Kernel), ""
	if t.Initrd != "" {
		initrd = path.Join(mnt, t.Initrd)
	}
	if err := LoadKexec(ctx, kernel, initrd, t.Cmdline); err != nil {
		return fmt.Errorf("%w (from %s)", err, dev)
	}
	return nil
}

// LoadKexec loads the kernel file, the initrd file ("" for none) and the command line
// for kexec, with kexec_file_load: the kernel checks the files itself.
func LoadKexec(ctx context.Context, kernel, initrd, cmdline string) error {
	kf, err := os.Open(kernel)
	if err != nil {
		return fmt.Errorf("kexec: %w", err)
	}
	defer kf.Close()
	var inf *os.File
	if initrd != "" {
		if inf, err = os.Open(initrd); err != nil {
			return fmt.Errorf("kexec: %w", err)
		}
		defer inf.Close()
	}
	if err := kexec.FileLoad(kf, inf, cmdline); err != nil {
		return fmt.Errorf("kexec: loading %s: %w", kernel, err)
	}
	return ctx.Err()
}

// NodeReboot reboots a deployed node, into the kernel loaded for kexec with kexec set:
// through systemd when it runs (`systemctl reboot` or `systemctl kexec`, a clean shutdown
// that stops the services and unmounts), else with reboot(2) after syncing, as the ramdisk
// does. It returns only on failure (or once systemd has the request).
func NodeReboot(ctx context.Context, r run.Runner, kexecLoaded bool) error {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		verb := "reboot"
		if kexecLoaded {
			verb = "kexec"
		}
		if _, err := r.Run(ctx, run.Cmd{Argv: []string{"systemctl", verb}}); err != nil {
			return fmt.Errorf("systemctl %s: %w", verb, err)
		}
		return nil
	}
	unix.Sync()
	if kexecLoaded {
		return os.NewSyscallError("kexec reboot", kexec.Reboot())
	}
	return os.NewSyscallError("reboot", unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART))
}
