package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
)

// verifyActions implements the verify policy (and nailgun_legacy with keep_data): the
// disks must already hold the planned layout. The tables and logical volumes are compared
// first, reading only; on the first difference it fails and nothing has been written.
// On a match it brings up what is there (partitions, md arrays, volume groups), adopts
// the identities of the filesystems it keeps, and returns the steps that re-create the
// others.
func verifyActions(ctx context.Context, layout *partition.Layout, devs partition.Devices, env partition.Env) ([]partition.Action, error) {
	tables := map[string]*partition.ExistingTable{}
	for _, d := range layout.Disks {
		dev := devs[d.ID.Value]
		t, err := partition.ReadTable(ctx, dev, d.SectorSize)
		if errors.Is(err, partition.ErrNoGPT) {
			return nil, fmt.Errorf("partitions_policy %q: disk %s (%s): %w", layout.Policy, d.ID, dev, err)
		}
		if err != nil {
			return nil, Environmentf("reading the partition table of %s: %w", dev, err)
		}
		if err := partition.CompareTable(d, t); err != nil {
			return nil, fmt.Errorf("partitions_policy %q: %w", layout.Policy, err)
		}
		tables[d.ID.Value] = t
	}
	if len(layout.VGs) > 0 {
		lvs, err := listLVs(ctx, env.Run)
		if err != nil {
			return nil, err
		}
		if err := partition.CompareLVs(layout, lvs); err != nil {
			return nil, fmt.Errorf("partitions_policy %q: %w", layout.Policy, err)
		}
	}

	// The layout matches: make its devices appear, as they are on disk.
	for _, d := range layout.Disks {
		t := tables[d.ID.Value]
		parts := make([]disk.Part, len(t.Partitions))
		for i, p := range t.Partitions {
			parts[i] = disk.Part{Number: p.Number, Start: p.Start * d.SectorSize, Size: (p.End - p.Start + 1) * d.SectorSize}
		}
		if err := env.Sys.Reread(ctx, devs[d.ID.Value], parts); err != nil {
			return nil, Environmentf("%w", err)
		}
	}
	for _, r := range layout.RAIDs {
		argv := []string{"mdadm", "--assemble", "--run", r.Device()}
		for _, m := range r.Members {
			argv = append(argv, disk.PartitionPath(devs[m.Disk], m.Partition))
		}
		if _, err := env.Run.Run(ctx, run.Cmd{Argv: argv}); err != nil {
			return nil, Environmentf("assembling %s: %w", r.Device(), err)
		}
	}
	for _, vg := range layout.VGs {
		if _, err := env.Run.Run(ctx, run.Cmd{Argv: []string{"lvm", "vgchange", "-ay", vg.Name}}); err != nil {
			return nil, Environmentf("activating volume group %s: %w", vg.Name, err)
		}
	}

	kept := map[*partition.Filesystem]partition.FSInfo{}
	for _, t := range partition.FilesystemDevices(layout, devs) {
		if !t.FS.KeepData {
			continue
		}
		info, err := probeFS(ctx, env.Run, t.Dev)
		if err != nil {
			return nil, err
		}
		kept[t.FS] = info
	}
	if err := layout.Adopt(tables, kept); err != nil {
		return nil, fmt.Errorf("partitions_policy %q: %w", layout.Policy, err)
	}
	return partition.RemakeActions(layout, devs), nil
}

// listLVs reads every logical volume's size, in bytes, keyed "vg/lv".
func listLVs(ctx context.Context, r run.Runner) (map[string]uint64, error) {
	res, err := r.Run(ctx, run.Cmd{Argv: []string{"lvm", "lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,lv_name,lv_size"}})
	if err != nil {
		return nil, Environmentf("listing logical volumes: %w", err)
	}
	var rep struct {
		Report []struct {
			LV []struct {
				VG   string `json:"vg_name"`
				Name string `json:"lv_name"`
				Size string `json:"lv_size"`
			} `json:"lv"`
		} `json:"report"`
	}
	if err := json.Unmarshal(res.Stdout, &rep); err != nil {
		return nil, Environmentf("parsing lvm lvs output: %w", err)
	}
	out := map[string]uint64{}
	for _, r := range rep.Report {
		for _, lv := range r.LV {
			n, err := strconv.ParseUint(strings.TrimSpace(lv.Size), 10, 64)
			if err != nil {
				return nil, Environmentf("lvm lvs: size %q of %s/%s: %w", lv.Size, lv.VG, lv.Name, err)
			}
			out[lv.VG+"/"+lv.Name] = n
		}
	}
	return out, nil
}

// probeFS asks blkid what a device holds. blkid exits 2 when it finds nothing, which
// is an empty FSInfo, not an error.
func probeFS(ctx context.Context, r run.Runner, dev string) (partition.FSInfo, error) {
	res, err := r.Run(ctx, run.Cmd{Argv: []string{"blkid", "-p", "-o", "export", dev}})
	var rerr *run.Error
	if errors.As(err, &rerr) && rerr.ExitCode == 2 {
		return partition.FSInfo{}, nil
	}
	if err != nil {
		return partition.FSInfo{}, Environmentf("probing %s: %w", dev, err)
	}
	return parseBlkid(res.Stdout), nil
}

func parseBlkid(out []byte) partition.FSInfo {
	var info partition.FSInfo
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "TYPE":
			info.Type = v
		case "UUID":
			info.UUID = v
		case "LABEL":
			info.Label = v
		}
	}
	return info
}
