package engine

import (
	"context"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/partition"
)

// BootList is `provisioner list --json`'s document, and what the agent of a deployed
// node answers on GET /v1/boot: one type, so the two never drift apart.
type BootList struct {
	Source   string               `json:"source"`
	Default  int                  `json:"default"`
	Saved    int                  `json:"saved"`
	Pending  *int                 `json:"pending_once"`
	Booted   *int                 `json:"booted"`
	Mismatch string               `json:"mismatch,omitempty"`
	GrubEnv  string               `json:"grubenv_error,omitempty"`
	Elements []bootloader.Element `json:"elements"`
}

// ListBoot reads the boot entries of an opened boot directory; boot files it cannot read
// are an environment problem (exit 3). Which entry is booted now is only looked up for
// the running system's own boot files (bd.Live): elsewhere the running root says nothing
// about them.
func ListBoot(ctx context.Context, bd *BootDir, env partition.Env) (bootloader.Status, error) {
	booted := ""
	if bd.Live {
		booted = BootedRootUUID(ctx, env)
	}
	st, err := bootloader.List(bd.Path, booted)
	if err != nil {
		return st, Environmentf("%w", err)
	}
	return st, nil
}

// NewBootList is the document of st, read from the boot files at source.
func NewBootList(source string, st bootloader.Status) BootList {
	return BootList{
		Source: source, Default: st.Default, Saved: st.Saved, Pending: st.Pending, Booted: st.Booted,
		Mismatch: st.Mismatch, GrubEnv: st.EnvError, Elements: st.Elements,
	}
}
