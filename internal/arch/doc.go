// Package arch holds no code: its test keeps the architecture true (which
// package may import which, only internal/run executes programs) and the tree gofmt'd.
package arch
