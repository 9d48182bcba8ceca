package engine

import (
	"context"
	"errors"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
)

// Temporary copy of the keepram branch's API, so viaram builds alone; removed at merge.
type KeepRamdiskOptions struct {
	Fetcher       *deploy.Fetcher
	URL, Checksum string
	Dir           string
	BootUUID      string
	Cmdline       []string
}

func KeepRamdisk(ctx context.Context, o KeepRamdiskOptions) (*bootloader.RamdiskInfo, error) {
	return nil, errors.New("not merged yet")
}
