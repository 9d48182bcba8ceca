package disk

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxHolders bounds how many holders an error names (readers can be many).
const maxHolders = 3

// lockHolders names the processes holding a flock on the inode st describes, from
// procRoot/locks ("1: FLOCK  ADVISORY  WRITE 1234 fe:00:9979663 0 EOF": the device as
// hexadecimal major:minor, then the inode) and each one's command line. It returns nil
// when nothing can be told; it is only for messages.
func lockHolders(procRoot string, st unix.Stat_t) []string {
	f, err := os.Open(filepath.Join(procRoot, "locks"))
	if err != nil {
		return nil
	}
	defer f.Close()
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)), st.Ino)
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// A waiter's line has "->" after the number; we never wait in flock, others might.
		if len(fields) < 6 || fields[1] != "FLOCK" || !sameLockInode(fields[5], want) {
			continue
		}
		pid := fields[4]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		if len(out) == maxHolders {
			out = append(out, "...")
			break
		}
		h := "pid " + pid
		if cmd := commandLine(procRoot, pid); cmd != "" {
			h += ": " + cmd
		}
		out = append(out, h)
	}
	return out
}

// sameLockInode compares /proc/locks' "MAJ:MIN:INODE" with want, ignoring how many hex
// digits the kernel used for the numbers.
func sameLockInode(got, want string) bool {
	g, w := strings.Split(got, ":"), strings.Split(want, ":")
	if len(g) != 3 || len(w) != 3 {
		return false
	}
	for i, base := range []int{16, 16, 10} {
		a, err1 := strconv.ParseUint(g[i], base, 64)
		b, err2 := strconv.ParseUint(w[i], base, 64)
		if err1 != nil || err2 != nil || a != b {
			return false
		}
	}
	return true
}

// commandLine is a process's argv joined by spaces, shortened to 120 bytes; "" when the
// process is gone or hidden.
func commandLine(procRoot, pid string) string {
	b, err := os.ReadFile(filepath.Join(procRoot, pid, "cmdline"))
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
