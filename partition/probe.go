package partition

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/provisioner/provisioner/internal/run"
)

// FSInfo is a filesystem's identity as blkid reports it.
type FSInfo struct {
	Type, UUID, Label string
}

// ProbeFS asks blkid what dev holds. blkid exits 2 when it finds nothing, which is an
// empty FSInfo, not an error.
func ProbeFS(ctx context.Context, r run.Runner, dev string) (FSInfo, error) {
	res, err := r.Run(ctx, run.Cmd{Argv: blkidArgv(dev)})
	return blkidResult(dev, res, err)
}

// blkidArgv probes dev itself (-p: not blkid's cache, which may predate the last mkfs).
func blkidArgv(dev string) []string {
	return []string{"blkid", "-p", "-o", "export", dev}
}

// blkidResult reads the outcome of blkidArgv(dev).
func blkidResult(dev string, res run.Result, err error) (FSInfo, error) {
	var rerr *run.Error
	if errors.As(err, &rerr) && rerr.ExitCode == 2 {
		return FSInfo{}, nil
	}
	if err != nil {
		return FSInfo{}, fmt.Errorf("probing %s: %w", dev, err)
	}
	return ParseBlkid(res.Stdout), nil
}

// ParseBlkid reads the type, UUID and label from the output of "blkid -o export".
func ParseBlkid(out []byte) FSInfo {
	var info FSInfo
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

// lvsArgv reports every logical volume's size in bytes, as JSON.
var lvsArgv = []string{"lvm", "lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,lv_name,lv_size"}

// parseLVs reads the report of lvsArgv: every logical volume's size, in bytes, keyed
// "vg/lv".
func parseLVs(out []byte) (map[string]uint64, error) {
	var rep struct {
		Report []struct {
			LV []struct {
				VG   string `json:"vg_name"`
				Name string `json:"lv_name"`
				Size string `json:"lv_size"`
			} `json:"lv"`
		} `json:"report"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("parsing lvm lvs output: %w", err)
	}
	lvs := map[string]uint64{}
	for _, r := range rep.Report {
		for _, lv := range r.LV {
			n, err := strconv.ParseUint(strings.TrimSpace(lv.Size), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("lvm lvs: size %q of %s/%s: %w", lv.Size, lv.VG, lv.Name, err)
			}
			lvs[lv.VG+"/"+lv.Name] = n
		}
	}
	return lvs, nil
}

// ProbeLVs asks lvm for every logical volume's size in bytes, keyed "vg/lv", so that a
// changed spec is compared with the volumes as they are (Current.LVs).
func ProbeLVs(ctx context.Context, r run.Runner) (map[string]uint64, error) {
	res, err := r.Run(ctx, run.Cmd{Argv: lvsArgv})
	if err != nil {
		return nil, fmt.Errorf("listing logical volumes: %w", err)
	}
	return parseLVs(res.Stdout)
}

// vgsArgv reports every volume group's free space in bytes, as JSON.
var vgsArgv = []string{"lvm", "vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,vg_free"}

// ProbeVGFree asks lvm for every volume group's free space in bytes, by name
// (Current.VGFree): what created and grown logical volumes can take.
func ProbeVGFree(ctx context.Context, r run.Runner) (map[string]uint64, error) {
	res, err := r.Run(ctx, run.Cmd{Argv: vgsArgv})
	if err != nil {
		return nil, fmt.Errorf("listing volume groups: %w", err)
	}
	return parseVGFree(res.Stdout)
}

// parseVGFree reads the report of vgsArgv.
func parseVGFree(out []byte) (map[string]uint64, error) {
	var rep struct {
		Report []struct {
			VG []struct {
				Name string `json:"vg_name"`
				Free string `json:"vg_free"`
			} `json:"vg"`
		} `json:"report"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("parsing lvm vgs output: %w", err)
	}
	free := map[string]uint64{}
	for _, r := range rep.Report {
		for _, vg := range r.VG {
			n, err := strconv.ParseUint(strings.TrimSpace(vg.Free), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("lvm vgs: free space %q of %s: %w", vg.Free, vg.Name, err)
			}
			free[vg.Name] = n
		}
	}
	return free, nil
}
