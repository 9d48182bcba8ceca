package partition

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/run"
)

// TestProbeLVM: the logical volumes' sizes and the groups' free space are read from lvm's
// JSON reports; a failing lvm or a report that does not parse is an error naming it.
func TestProbeLVM(t *testing.T) {
	fake := &run.Fake{Handler: func(c run.Call) (run.Result, error) {
		switch c.Argv[1] {
		case "lvs":
			return run.Result{Stdout: []byte(`{"report": [{"lv": [{"vg_name":"os", "lv_name":"root", "lv_size":"4294967296"}, {"vg_name":"os", "lv_name":"data", "lv_size":" 1073741824"}]}]}`)}, nil
		case "vgs":
			return run.Result{Stdout: []byte(`{"report": [{"vg": [{"vg_name":"os", "vg_free":"524288000"}, {"vg_name":"big", "vg_free":"0"}]}]}`)}, nil
		}
		return run.Result{}, errors.New("unexpected")
	}}
	ctx := context.Background()
	lvs, err := ProbeLVs(ctx, fake)
	if err != nil || len(lvs) != 2 || lvs["os/root"] != 4<<30 || lvs["os/data"] != 1<<30 {
		t.Errorf("lvs = %v, %v", lvs, err)
	}
	free, err := ProbeVGFree(ctx, fake)
	if err != nil || len(free) != 2 || free["os"] != 500<<20 || free["big"] != 0 {
		t.Errorf("vg free = %v, %v", free, err)
	}
	calls := fake.Calls()
	if len(calls) != 2 || strings.Join(calls[1].Argv, " ") != "lvm vgs --reportformat json --units b --nosuffix -o vg_name,vg_free" {
		t.Errorf("calls %v", calls)
	}
	if _, err := parseVGFree([]byte(`{"report": [{"vg": [{"vg_name":"os", "vg_free":"1.5"}]}]}`)); err == nil || !strings.Contains(err.Error(), `free space "1.5" of os`) {
		t.Errorf("bad size: %v", err)
	}
	broken := &run.Fake{Handler: func(c run.Call) (run.Result, error) {
		return run.Result{}, &run.Error{Argv: c.Argv, ExitCode: 5}
	}}
	if _, err := ProbeVGFree(ctx, broken); err == nil || !strings.Contains(err.Error(), "listing volume groups") {
		t.Errorf("failing lvm: %v", err)
	}
	if _, err := ProbeLVs(ctx, broken); err == nil || !strings.Contains(err.Error(), "listing logical volumes") {
		t.Errorf("failing lvm: %v", err)
	}
}
