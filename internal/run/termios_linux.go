package run

import (
	"syscall"
	"unsafe"
)

// isTerminalFd reports whether fd is a terminal (TCGETS succeeds), with the syscall
// package only: internal/run depends on the standard library alone.
func isTerminalFd(fd uintptr) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}
