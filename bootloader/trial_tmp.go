package bootloader

import "errors"

// TEMPORARY: replaced by the trial helper's implementation at merge.

func ArmTrial(env *Env, bi *BootInfo, grubID, tries int) error {
	el := elementByID(bi, grubID)
	if el == nil {
		return errors.New("no element")
	}
	x := ""
	for range tries {
		x += "x"
	}
	env.Set("trial_entry", el.MenuentryID)
	env.Set("trial_tries", x)
	return nil
}

func pendingTrialOf(env *Env, bi *BootInfo, grubID int) bool {
	v, _ := env.Get("trial_entry")
	return v != "" && resolveEnvEntry(bi, v) == elementByID(bi, grubID)
}

func cancelTrial(env *Env, bi *BootInfo) {
	env.Unset("trial_entry")
	env.Unset("trial_tries")
}

const MaxTrialTries = 10
