package bootloader

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// Temporary copies of the keepram branch's API, so viaram builds alone; removed at merge.

const RamdiskEntryID = "provisioner-ramdisk"
const RamdiskKernel = "ramdisk/vmlinuz"
const RamdiskInitrd = "ramdisk/initramfs.cpio.zst"
const RamdiskCmdline = "ramdisk/cmdline"
const RamdiskCfgPath = "boot/grub/ramdisk.cfg"

var ErrNoRamdisk = errors.New("no ramdisk kept")

type RamdiskEntry struct {
	BootUUID string
	Args     []string
}

type RamdiskInfo struct {
	KernelBytes, InitrdBytes int64
	Cmdline                  []string
}

func WriteRamdiskEntry(ctx context.Context, dir string, e RamdiskEntry) error {
	return os.WriteFile(filepath.Join(dir, RamdiskCfgPath), []byte("menuentry x --id provisioner-ramdisk {\n linux /ramdisk/vmlinuz "+strings.Join(e.Args, " ")+"\n}\n"), 0o600)
}

func ReadRamdisk(dir string) (*RamdiskInfo, error) {
	k, err := os.Stat(filepath.Join(dir, RamdiskKernel))
	if err != nil {
		return nil, ErrNoRamdisk
	}
	i, err := os.Stat(filepath.Join(dir, RamdiskInitrd))
	if err != nil {
		return nil, ErrNoRamdisk
	}
	c, _ := os.ReadFile(filepath.Join(dir, RamdiskCmdline))
	return &RamdiskInfo{KernelBytes: k.Size(), InitrdBytes: i.Size(), Cmdline: strings.Fields(string(c))}, nil
}
