package bootloader

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// grubModel is a Go model of the entry selection that Render writes: what grub does with
// grubenv at one boot. It lets the tests walk a trial through many boots without grub.
// modelLines lists the script lines it implements, and TestGrubModelMatchesRender checks
// that Render writes exactly those, so the model cannot drift from the script unnoticed.
type grubModel struct {
	ids        []string // menuentry ids, in menu order
	cfgDefault int      // Config.Default
}

// bootResult is one boot of the model.
type bootResult struct {
	entry    int  // menu index of the entry that boots
	fellBack bool // the chosen entry's kernel failed to load and grub booted fallback
	env      *Env // grubenv after the boot's save_env calls
}

// boot runs the selection on the grubenv file (nil: no grubenv, or one load_env cannot
// read); kernelFails says whether an entry's kernel cannot be loaded.
func (m grubModel) boot(file *Env, kernelFails func(id string) bool) bootResult {
	out := &Env{}
	mem := map[string]string{}
	if file != nil { // load_env
		out.pairs = slices.Clone(file.pairs)
		for _, k := range file.Keys() {
			mem[k], _ = file.Get(k)
		}
	}
	// save_env writes the variables' values as they are in memory.
	save := func(keys ...string) {
		for _, k := range keys {
			out.Set(k, mem[k])
		}
	}
	fallback := -1
	switch {
	case mem["next_entry"] != "":
		mem["default"] = mem["next_entry"]
		mem["next_entry"] = ""
		save("next_entry")
	case mem["trial_entry"] != "" && mem["trial_tries"] != "":
		mem["trial_tries"] = mem["trial_tries"][1:] // regexp '^.(.*)$'
		save("trial_tries")
		mem["default"] = mem["trial_entry"]
		fallback = m.cfgDefault
		for i, id := range m.ids {
			if mem["saved_entry"] == id {
				fallback = i
			}
		}
	case mem["trial_entry"] != "":
		mem["trial_failed"] = mem["trial_entry"]
		mem["trial_entry"] = ""
		save("trial_failed", "trial_entry")
		mem["default"] = mem["saved_entry"]
	default:
		mem["default"] = mem["saved_entry"]
	}
	if mem["default"] == "" {
		mem["default"] = m.ids[m.cfgDefault]
	}
	// grub boots its first entry when default names none.
	entry := max(slices.Index(m.ids, mem["default"]), 0)
	r := bootResult{entry: entry, env: out}
	if kernelFails != nil && kernelFails(m.ids[entry]) && fallback >= 0 {
		r.entry, r.fellBack = fallback, true
	}
	return r
}

// modelLines are the lines of grub.cfg that grubModel.boot implements, for c's entries.
func modelLines(c Config) []string {
	lines := []string{
		`if [ -s $prefix/grubenv ]; then`,
		`  load_env`,
		`fi`,
		`if [ "${next_entry}" ] ; then`,
		`   set default="${next_entry}"`,
		`   set next_entry=`,
		`   save_env next_entry`,
		`   set boot_once=true`,
		`elif [ "${trial_entry}" ] ; then`,
		`   if [ "${trial_tries}" ] ; then`,
		`      regexp --set 1:trial_tries '^.(.*)$' "${trial_tries}"`,
		`      save_env trial_tries`,
		`      set default="${trial_entry}"`,
		fmt.Sprintf(`      set fallback=%d`, c.Default),
	}
	for i, e := range c.Entries {
		lines = append(lines, fmt.Sprintf(`      if [ "${saved_entry}" = %s ] ; then set fallback=%d ; fi`, e.ID, i))
	}
	if c.Ramdisk {
		lines = append(lines, fmt.Sprintf(`      if [ "${saved_entry}" = %s ] ; then set fallback=%d ; fi`, RamdiskEntryID, len(c.Entries)))
	}
	return append(lines,
		`   else`,
		`      set trial_failed="${trial_entry}"`,
		`      set trial_entry=`,
		`      save_env trial_failed trial_entry`,
		`      set default="${saved_entry}"`,
		`   fi`,
		`else`,
		`   set default="${saved_entry}"`,
		`fi`,
		`if [ -z "${default}" ] ; then`,
		`   set default=`+c.Entries[c.Default].ID,
		`fi`,
		fmt.Sprintf(`set timeout=%d`, c.Timeout),
	)
}

// modelConfig is a menu of three entries whose plan default is the second.
func modelConfig() Config {
	c := Config{Timeout: 3, Default: 1}
	for _, name := range []string{"centos", "ubuntu", "utility"} {
		c.Entries = append(c.Entries, MenuEntry{ID: menuEntryID(name), Title: name, BootUUID: "u-" + name,
			Kernel: "/boot/vmlinuz", Cmdline: "root=UUID=u-" + name + " ro", Modules: []string{"ext2"}})
	}
	return c
}

func (c Config) model() grubModel {
	m := grubModel{cfgDefault: c.Default}
	for _, e := range c.Entries {
		m.ids = append(m.ids, e.ID)
	}
	if c.Ramdisk {
		// The menuentry of the sourced ramdisk.cfg joins the menu after grub.cfg's own.
		m.ids = append(m.ids, RamdiskEntryID)
	}
	return m
}

// TestGrubModelMatchesRender: the model's lines are, in order and whole, the part of
// Render's grub.cfg between the terminal settings and the first menuentry; and every
// grub.cfg of the examples holds the trial block.
func TestGrubModelMatchesRender(t *testing.T) {
	for _, c := range []Config{modelConfig(), func() Config { c := modelConfig(); c.Default = 2; return c }(), singleRamdiskConfig()} {
		cfg := string(Render(c))
		block := strings.Join(modelLines(c), "\n") + "\n"
		start := strings.Index(cfg, "if [ -s $prefix/grubenv ]")
		end := strings.Index(cfg, "\nmenuentry ")
		if start < 0 || end < 0 || cfg[start:end] != block {
			t.Errorf("the script Render writes is not the model's:\n--- Render\n%s\n--- model\n%s", cfg, block)
		}
		scriptCheck(t, []byte(cfg))
	}
}

// armed returns the model's menu, a boot-info for it and a grubenv whose default is
// centos, with a trial of ubuntu armed with tries.
func armed(t *testing.T, tries int) (grubModel, *BootInfo, *Env) {
	t.Helper()
	bi := switchBootInfo()
	env := defaultEnv()
	if err := ArmTrial(env, bi, 1, tries); err != nil {
		t.Fatal(err)
	}
	return modelConfig().model(), bi, env
}

func envVar(e *Env, k string) string {
	v, _ := e.Get(k)
	return v
}

// checkListed asserts that List's answer for grubenv env says grub boots entry next, as the
// model does.
func checkListed(t *testing.T, step string, bi *BootInfo, env *Env, next int) Status {
	t.Helper()
	st := status(bi, env, "")
	if st.Default != next {
		t.Errorf("%s: List says grub_id %d boots next, the model boots %d", step, st.Default, next)
	}
	return st
}

// TestTrialWalkToRollback: a trial of 3 tries boots the trial entry 3 times, counting down
// in grubenv, then grub boots the previous default and names the failed trial; List
// predicts each boot, and a boot after that changes nothing.
func TestTrialWalkToRollback(t *testing.T) {
	m, bi, env := armed(t, 3)
	for i, left := range []string{"xx", "x", ""} {
		st := checkListed(t, fmt.Sprintf("before boot %d", i+1), bi, env, 1)
		if st.Trial == nil || st.Trial.TriesLeft != 3-i || st.Trial.Tries != 3 || st.Mismatch != "" {
			t.Errorf("boot %d: Trial %+v, mismatch %q", i+1, st.Trial, st.Mismatch)
		}
		r := m.boot(env, nil)
		if r.entry != 1 || envVar(r.env, "trial_tries") != left || envVar(r.env, "trial_entry") != "provisioner-ubuntu" {
			t.Fatalf("boot %d: entry %d, grubenv %v", i+1, r.entry, r.env.pairs)
		}
		env = r.env
	}
	st := checkListed(t, "tries used up", bi, env, 0)
	if st.Trial == nil || st.Trial.TriesLeft != 0 {
		t.Errorf("tries used up: Trial %+v", st.Trial)
	}
	r := m.boot(env, nil)
	if r.entry != 0 || envVar(r.env, "trial_failed") != "provisioner-ubuntu" || envVar(r.env, "trial_entry") != "" ||
		envVar(r.env, "saved_entry") != "provisioner-centos" {
		t.Fatalf("boot 4: entry %d, grubenv %v", r.entry, r.env.pairs)
	}
	st = checkListed(t, "after the rollback", bi, r.env, 0)
	if st.Trial != nil || st.FailedTrial == nil || st.FailedTrial.GrubID != 1 || st.FailedTrial.Tries != 3 || st.Mismatch != "" {
		t.Errorf("after the rollback: Trial %+v FailedTrial %+v mismatch %q", st.Trial, st.FailedTrial, st.Mismatch)
	}
	if got, want := st.RollbackMessage(), "trial of ubuntu failed after 3 boots; centos boots now"; got != want {
		t.Errorf("RollbackMessage = %q, want %q", got, want)
	}
	again := m.boot(r.env, nil)
	if again.entry != 0 || !slices.Equal(again.env.pairs, r.env.pairs) {
		t.Errorf("boot 5: entry %d, grubenv %v", again.entry, again.env.pairs)
	}
	// grubenv stays a valid block of the same size all along.
	if _, err := again.env.Encode(); err != nil {
		t.Error(err)
	}
}

// TestTrialOneShot: a one-shot entry set during a trial boots first, takes no try, and the
// trial goes on at the boot after.
func TestTrialOneShot(t *testing.T) {
	m, bi, env := armed(t, 2)
	env.Set("next_entry", "provisioner-utility")
	two := 2
	bi.PendingOnce = &two
	checkListed(t, "one-shot pending", bi, env, 2)
	r := m.boot(env, nil)
	if r.entry != 2 || envVar(r.env, "trial_tries") != "xx" || envVar(r.env, "next_entry") != "" {
		t.Fatalf("one-shot boot: entry %d, grubenv %v", r.entry, r.env.pairs)
	}
	checkListed(t, "after the one-shot", bi, r.env, 1)
	r = m.boot(r.env, nil)
	if r.entry != 1 || envVar(r.env, "trial_tries") != "x" {
		t.Fatalf("trial boot: entry %d, grubenv %v", r.entry, r.env.pairs)
	}
}

// TestTrialKernelFails: when the trial entry's kernel cannot be loaded, the same boot falls
// back to the previous default (grub's fallback), and the try is used.
func TestTrialKernelFails(t *testing.T) {
	m, _, env := armed(t, 2)
	failsUbuntu := func(id string) bool { return id == "provisioner-ubuntu" }
	r := m.boot(env, failsUbuntu)
	if r.entry != 0 || !r.fellBack || envVar(r.env, "trial_tries") != "x" {
		t.Fatalf("entry %d, fell back %v, grubenv %v", r.entry, r.fellBack, r.env.pairs)
	}
	// A default the menu's fallback lines do not name (saved_entry unset) falls back to the
	// plan's default.
	env.Unset("saved_entry")
	env.Set("trial_entry", "provisioner-centos")
	r = m.boot(env, func(id string) bool { return id == "provisioner-centos" })
	if r.entry != 1 || !r.fellBack {
		t.Errorf("without saved_entry: entry %d, fell back %v", r.entry, r.fellBack)
	}
	// Outside a trial grub has no fallback, as before trials existed.
	r = m.boot(defaultEnv(), func(string) bool { return true })
	if r.entry != 0 || r.fellBack {
		t.Errorf("no trial: entry %d, fell back %v", r.entry, r.fellBack)
	}
}

// TestTrialNoGrubEnv: a grubenv that is missing or unreadable (torn by a power cut) boots
// the plan's default, trial or not.
func TestTrialNoGrubEnv(t *testing.T) {
	m := modelConfig().model()
	if r := m.boot(nil, nil); r.entry != 1 {
		t.Errorf("no grubenv: entry %d", r.entry)
	}
}

// singleRamdiskConfig is the menu of a single-image node that keeps the deploy ramdisk.
func singleRamdiskConfig() Config {
	return Config{Timeout: 5, Default: 0, Ramdisk: true, Entries: []MenuEntry{{ID: menuEntryID("debian"), Title: "debian",
		BootUUID: "u-debian", Kernel: "/boot/vmlinuz", Cmdline: "root=UUID=u-debian ro", Modules: []string{"ext2"}}}}
}

// TestTrialFallsBackToRamdisk: on a single-image node keeping the ramdisk, a trial of the
// image whose saved_entry is the ramdisk's entry boots the image while it has tries, falls
// back to the ramdisk in the same boot when the image's kernel cannot be loaded, and boots
// the ramdisk once the tries are used up. grub.cfg ends by sourcing ramdisk.cfg, whose entry
// is therefore the menu's last.
func TestTrialFallsBackToRamdisk(t *testing.T) {
	c := singleRamdiskConfig()
	cfg := string(Render(c))
	if !strings.HasSuffix(cfg, "}\n\n"+ramdiskSource+"\n") {
		t.Fatalf("grub.cfg does not end by sourcing ramdisk.cfg:\n%s", cfg)
	}
	scriptCheck(t, []byte(cfg))
	m := c.model()
	if got := slices.Index(m.ids, RamdiskEntryID); got != len(c.Entries) {
		t.Fatalf("ramdisk entry at menu index %d, want %d", got, len(c.Entries))
	}
	env := &Env{}
	env.Set("saved_entry", RamdiskEntryID)
	env.Set("trial_entry", "provisioner-debian")
	env.Set("trial_tries", "xx")

	r := m.boot(env, nil)
	if r.entry != 0 || r.fellBack || envVar(r.env, "trial_tries") != "x" {
		t.Fatalf("boot 1: entry %d, fell back %v, grubenv %v", r.entry, r.fellBack, r.env.pairs)
	}
	broken := m.boot(r.env, func(id string) bool { return id == "provisioner-debian" })
	if broken.entry != 1 || !broken.fellBack || envVar(broken.env, "trial_tries") != "" {
		t.Fatalf("kernel fails: entry %d, fell back %v, grubenv %v", broken.entry, broken.fellBack, broken.env.pairs)
	}
	over := m.boot(broken.env, nil)
	if over.entry != 1 || envVar(over.env, "trial_failed") != "provisioner-debian" || envVar(over.env, "trial_entry") != "" {
		t.Fatalf("tries used up: entry %d, grubenv %v", over.entry, over.env.pairs)
	}
	// Without the ramdisk in the menu the same grubenv names no entry: the fallback is the
	// plan's default, the image itself.
	c.Ramdisk = false
	if r := c.model().boot(env, func(string) bool { return true }); r.entry != 0 {
		t.Errorf("without the ramdisk: entry %d", r.entry)
	}
}
