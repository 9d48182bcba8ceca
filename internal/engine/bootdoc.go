package engine

import "github.com/provisioner/provisioner/bootloader"

// BootDocument is the JSON document of the boot entries that `list --json` prints (and a
// node's agent serves): one shape wherever it is read.
type BootDocument struct {
	// Source says where the boot files are.
	Source string `json:"source"`
	// Default is the grub_id grub boots next; Saved the default's.
	Default int `json:"default"`
	Saved   int `json:"saved"`
	// Pending is the grub_id of a pending one-shot entry, null when none.
	Pending *int `json:"pending_once"`
	// Booted is the grub_id booted now, null when not known.
	Booted *int `json:"booted"`
	// Trial is the pending trial boot, null when none.
	Trial *bootloader.TrialStatus `json:"trial"`
	// Rollback is a rollback grub made that this look found (and recorded, unless the boot
	// files cannot be written), null when none.
	Rollback *Rollback `json:"rollback"`
	// LastTrial is how the last trial ended, null before the first.
	LastTrial *bootloader.TrialOutcome `json:"last_trial"`
	Mismatch  string                   `json:"mismatch,omitempty"`
	GrubEnv   string                   `json:"grubenv_error,omitempty"`
	Elements  []bootloader.Element     `json:"elements"`
}

// Document is l as BootDocument.
func (l BootListing) Document() BootDocument {
	st := l.Status
	return BootDocument{Source: l.Source, Default: st.Default, Saved: st.Saved, Pending: st.Pending, Booted: st.Booted,
		Trial: st.Trial, Rollback: l.Rollback, LastTrial: st.LastTrial, Mismatch: st.Mismatch, GrubEnv: st.EnvError, Elements: st.Elements}
}
