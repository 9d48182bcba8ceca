package partition

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/run"
)

// withPolicy sets doc's partitions_policy and, when keep, keep_data on the volume whose
// JSON ends with volume (the closing brace included).
func withPolicy(doc, policy string, keep bool, volume string) string {
	doc = strings.Replace(doc, `"partitions": [`, `"partitions_policy": "`+policy+`", "partitions": [`, 1)
	if keep {
		doc = strings.Replace(doc, volume, strings.TrimSuffix(volume, "}")+`, "keep_data": true}`, 1)
	}
	return doc
}

// keptRoot is the root logical volume of lvmRaidDoc.
const keptRoot = `"size": "4 GiB"}`

func TestPolicyOf(t *testing.T) {
	for _, tc := range []struct {
		policy string
		keep   bool
		verify bool
	}{
		{"clean", false, false},
		{"nailgun_legacy", false, false},
		{"nailgun_legacy", true, true},
		{"verify", false, true},
		{"verify", true, true},
	} {
		l := mustPlan(t, withPolicy(lvmRaidDoc, tc.policy, tc.keep, keptRoot), nil, "policy")
		p := PolicyOf(l)
		if p.ComparesFirst() != tc.verify || p.WipesOnFailure() == tc.verify {
			t.Errorf("%s, keep_data %v: compares first %v, wipes on failure %v", tc.policy, tc.keep, p.ComparesFirst(), p.WipesOnFailure())
		}
		got, err := p.Actions(sdDevs)
		if err != nil {
			t.Fatal(err)
		}
		clean, err := CleanActions(l, sdDevs)
		if err != nil {
			t.Fatal(err)
		}
		if same := slices.EqualFunc(got, clean, func(a, b Action) bool { return a.String() == b.String() }); same == tc.verify {
			t.Errorf("%s, keep_data %v: the steps are the clean ones: %v", tc.policy, tc.keep, same)
		}
		if _, err := p.Actions(Devices{"sda": "/dev/sda"}); err == nil || !strings.Contains(err.Error(), "sdb") {
			t.Errorf("%s: a disk without a device: %v", tc.policy, err)
		}
	}
}

// TestVerifyActions: the verify policy's list holds every step a run takes, in order:
// comparison, bring-up, probes and adoption (none of which writes), then the re-made
// filesystems.
func TestVerifyActions(t *testing.T) {
	l := mustPlan(t, withPolicy(lvmRaidDoc, "verify", true, keptRoot), nil, "verify")
	actions, err := PolicyOf(l).Actions(sdDevs)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range actions {
		got = append(got, a.String())
	}
	want := []string{
		"read the partition table of /dev/sda and compare it with disk sda of the plan (±1 MiB)",
		"read the partition table of /dev/sdb and compare it with disk sdb of the plan (±1 MiB)",
		"run: lvm lvs --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_size",
		"make the kernel see the 3 partitions of /dev/sda where its table has them",
		"make the kernel see the 3 partitions of /dev/sdb where its table has them",
		"run: mdadm --assemble --run /dev/md/md0 /dev/sda2 /dev/sdb2",
		"run: lvm vgchange -ay os",
		"run: blkid -p -o export /dev/os/root",
		"adopt the GUIDs of the partition tables and the UUIDs and labels of the kept filesystems into the plan (the images' fstabs follow)",
		"run: mke2fs -F -q -t ext4 -U " + l.RAIDs[0].FS.UUID + " -L boot /dev/md/md0",
		"run: mkswap -f -U " + l.VGs[0].LVs[1].FS.UUID + " -L swap /dev/os/swap",
	}
	if !slices.Equal(got, want) {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i, a := range actions {
		if a.check != (i < 9) {
			t.Errorf("step %d (%s): check %v", i+1, a, a.check)
		}
	}
}

// lvsReport is lvm's JSON report of l's logical volumes, each grown by off bytes.
func lvsReport(l *Layout, off uint64) []byte {
	var rows []string
	for _, vg := range l.VGs {
		for _, lv := range vg.LVs {
			rows = append(rows, `{"vg_name":"`+vg.Name+`", "lv_name":"`+lv.Name+`", "lv_size":"`+itoa(int(lv.SizeBytes+off))+`"}`)
		}
	}
	return []byte(`{"report": [{"lv": [` + strings.Join(rows, ", ") + `]}]}`)
}

// TestVerifyHandsResultsOn runs the verify steps that need no block device (a layout of
// logical volumes only; the loop-device tests run the rest) with a fake lvm and blkid:
// what lvs and blkid report reaches the comparison and the adoption, and a difference
// stops the run before its first write.
func TestVerifyHandsResultsOn(t *testing.T) {
	plan := func() *Layout {
		l := mustPlan(t, withPolicy(lvmRaidDoc, "verify", true, keptRoot), nil, "verify")
		l.Disks, l.RAIDs = nil, nil
		return l
	}
	handler := func(l *Layout, lvsOff uint64, blkid func(c run.Call) (run.Result, error)) func(c run.Call) (run.Result, error) {
		return func(c run.Call) (run.Result, error) {
			switch {
			case c.Argv[0] == "lvm" && c.Argv[1] == "lvs":
				return run.Result{Stdout: lvsReport(l, lvsOff)}, nil
			case c.Argv[0] == "blkid":
				return blkid(c)
			}
			return run.Result{}, nil
		}
	}
	found := func(run.Call) (run.Result, error) {
		return run.Result{Stdout: []byte("DEVNAME=/dev/os/root\nUUID=1111-kept\nLABEL=old\nTYPE=xfs\n")}, nil
	}
	nothing := func(c run.Call) (run.Result, error) { return run.Result{}, run.Fail(c.Argv, 2, "") }
	ctx := context.Background()

	t.Run("match", func(t *testing.T) {
		l := plan()
		fake := &run.Fake{Handler: handler(l, 0, found)}
		before := -1
		if err := Execute(ctx, Env{Run: fake}, verifyActions(l, Devices{}), Hooks{BeforeWrite: func() { before = len(fake.Calls()) }}); err != nil {
			t.Fatal(err)
		}
		want := []string{
			run.String(lvsArgv),
			"lvm vgchange -ay os",
			"blkid -p -o export /dev/os/root",
			"mkswap -f -U " + l.VGs[0].LVs[1].FS.UUID + " -L swap /dev/os/swap",
		}
		if got := fake.Commands(); !slices.Equal(got, want) {
			t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if before != 3 {
			t.Errorf("the first write began after %d programs, want 3", before)
		}
		if root := l.VGs[0].LVs[0].FS; root.UUID != "1111-kept" || root.Label != "old" {
			t.Errorf("kept root not adopted: %+v", root)
		}
		if !strings.Contains(l.Images[0].Fstab, "UUID=1111-kept") {
			t.Errorf("fstab lacks the kept UUID:\n%s", l.Images[0].Fstab)
		}
	})

	for _, tc := range []struct {
		name  string
		off   uint64
		blkid func(run.Call) (run.Result, error)
		step  int
		want  string
	}{
		{"lv size differs", 8 << 20, found, 1, "os/root is 4.01 GiB"},
		{"kept filesystem missing", 0, nothing, 4, "has keep_data but holds no filesystem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := plan()
			fake := &run.Fake{Handler: handler(l, tc.off, tc.blkid)}
			wrote := false
			err := Execute(ctx, Env{Run: fake}, verifyActions(l, Devices{}), Hooks{BeforeWrite: func() { wrote = true }})
			var se *StepError
			if !errors.As(err, &se) || se.N != tc.step || !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `partitions_policy "verify"`) {
				t.Fatalf("err = %v, want a mismatch at step %d containing %q", err, tc.step, tc.want)
			}
			if wrote || slices.ContainsFunc(fake.Commands(), func(c string) bool { return strings.HasPrefix(c, "mk") }) {
				t.Errorf("a write began after the mismatch: %v", fake.Commands())
			}
		})
	}
}

// TestVerifyComparesTheTableFirst reads a table written by another plan: a match passes
// the first step; a difference, or no GPT at all, fails it before anything else runs.
func TestVerifyComparesTheTableFirst(t *testing.T) {
	_, img := writeTo(t, gptDoc, 20<<30, 512)
	blank := filepath.Join(t.TempDir(), "blank.img")
	if err := os.WriteFile(blank, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(blank, 20<<30); err != nil {
		t.Fatal(err)
	}
	disks := map[string]Disk{"vda": {SizeBytes: 20 << 30, SectorSize: 512}}
	ctx := context.Background()

	same := mustPlan(t, withPolicy(gptDoc, "verify", false, ""), disks, "other seed")
	actions := verifyActions(same, Devices{"vda": img})
	if err := Execute(ctx, Env{}, actions[:1], Hooks{}); err != nil {
		t.Errorf("the same layout: %v", err)
	}

	for _, tc := range []struct {
		name      string
		doc, dev  string
		match     error
		wantInErr string
	}{
		{"other layout", strings.Replace(gptDoc, `"size": "1 GiB"`, `"size": "2 GiB"`, 1), img, ErrMismatch, "partition 6 is at sectors"},
		{"no GPT", gptDoc, blank, ErrNoGPT, "disk vda (" + blank + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := mustPlan(t, withPolicy(tc.doc, "verify", false, ""), disks, "other seed")
			fake := &run.Fake{}
			wrote := false
			err := Execute(ctx, Env{Run: fake}, verifyActions(l, Devices{"vda": tc.dev}), Hooks{BeforeWrite: func() { wrote = true }})
			var se *StepError
			if !errors.As(err, &se) || se.N != 1 || !errors.Is(err, tc.match) || !strings.Contains(err.Error(), tc.wantInErr) {
				t.Fatalf("err = %v, want %v at step 1 containing %q", err, tc.match, tc.wantInErr)
			}
			if wrote || len(fake.Calls()) > 0 {
				t.Errorf("steps ran after the failed comparison: %v", fake.Commands())
			}
		})
	}
}

func TestParseLVs(t *testing.T) {
	report := `  {
      "report": [
          {
              "lv": [
                  {"vg_name":"os", "lv_name":"root", "lv_size":"4294967296"},
                  {"vg_name":"os", "lv_name":"swap", "lv_size":"  1073741824"}
              ]
          }
      ]
  }`
	got, err := parseLVs([]byte(report))
	if err != nil {
		t.Fatal(err)
	}
	if got["os/root"] != 4<<30 || got["os/swap"] != 1<<30 || len(got) != 2 {
		t.Errorf("lvs = %v", got)
	}
	if cmd := run.String(lvsArgv); cmd != "lvm lvs --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_size" {
		t.Errorf("command = %s", cmd)
	}
	if _, err := parseLVs([]byte("not json")); err == nil || !strings.Contains(err.Error(), "parsing lvm lvs output") {
		t.Errorf("garbage: %v", err)
	}
	if _, err := parseLVs([]byte(`{"report": [{"lv": [{"vg_name":"os", "lv_name":"root", "lv_size":"4.5"}]}]}`)); err == nil || !strings.Contains(err.Error(), "size \"4.5\" of os/root") {
		t.Errorf("a size that is no integer: %v", err)
	}
}
