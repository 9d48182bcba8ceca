//go:build tools

// This file only pins dependencies: Build compiles u-root's init with `go build`
// inside this module, so its packages must stay in go.mod and go.sum, and `go mod tidy`
// keeps only what some file of the module imports.

package initramfs

import (
	_ "github.com/u-root/u-root/cmds/core/init"
)
