package run

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Argv: []string{"sgdisk", "-Z", "/dev/vda"}, ExitCode: 2, Err: errors.New("exit status 2"), Stderr: "Problem opening /dev/vda!\n"},
			"sgdisk -Z /dev/vda: exit status 2: Problem opening /dev/vda!"},
		{&Error{Argv: []string{"true"}, ExitCode: 1, Err: errors.New("exit status 1")}, "true: exit status 1"},
		{&Error{Argv: []string{"x"}, ExitCode: 4}, "x: exit status 4"},
		{&Error{Argv: []string{"x"}, ExitCode: -1}, "x: failed"},
		{&Error{ExitCode: -1, Err: errEmptyArgv}, "command: " + errEmptyArgv.Error()},
		{&Error{Argv: []string{"mkfs.vfat", "-n", "EFI SYSTEM"}, ExitCode: 1, Err: errors.New("exit status 1"), Stderr: "\n\nmkfs.fat 4.2\r\n  \nLabel too long\n\n"},
			"mkfs.vfat -n 'EFI SYSTEM': exit status 1: mkfs.fat 4.2; Label too long"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestStderrTail(t *testing.T) {
	long := strings.Repeat("x", 2000) + "END"
	wide := strings.Repeat("é", 600)
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"blank lines", "\n \n\t\n", ""},
		{"one line", "no space left on device\n", "no space left on device"},
		{"skips blanks", "a\n\nb\n  \nc", "a; b; c"},
		{"crlf", "a\r\nb\r\n", "a; b"},
		{"progress", "10%\r50%\r100%\ndone\n", "10%; 50%; 100%; done"},
		{"control chars", "\x1b[1mbold\x1b[0m\bx\tgone\n", "[1mbold[0mx gone"},
		{"line limit", "l1\nl2\nl3\nl4\nl5\nl6\nl7\n", "... l3; l4; l5; l6; l7"},
		{"byte limit", strings.Repeat("a", 300) + "\n" + strings.Repeat("b", 300) + "\n", "... " + strings.Repeat("b", 300)},
		{"huge line", long + "\n", "... " + long[len(long)-tailMaxBytes:]},
	}
	for _, tt := range tests {
		if got := stderrTail(tt.in); got != tt.want {
			t.Errorf("%s: stderrTail = %q, want %q", tt.name, got, tt.want)
		}
	}
	got := stderrTail(wide)
	if !utf8.ValidString(got) || len(got) > tailMaxBytes+len("... ") || !strings.HasSuffix(got, "éé") {
		t.Errorf("multibyte huge line: stderrTail = %q (%d bytes), want a valid UTF-8 tail", got, len(got))
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		argv []string
		want string
	}{
		{nil, ""},
		{[]string{"ls"}, "ls"},
		{[]string{"mkfs.ext4", "-F", "-U", "1234", "/dev/vda3"}, "mkfs.ext4 -F -U 1234 /dev/vda3"},
		{[]string{"mount", "-o", "rw,noatime", "UUID=ab-12", "/mnt/a"}, "mount -o rw,noatime UUID=ab-12 /mnt/a"},
		{[]string{"x", "a+b@c%d:e=f"}, "x a+b@c%d:e=f"},
		{[]string{"mkfs.vfat", "-n", "EFI SYSTEM"}, "mkfs.vfat -n 'EFI SYSTEM'"},
		{[]string{"echo", "it's"}, `echo 'it'\''s'`},
		{[]string{"sgdisk", ""}, "sgdisk ''"},
		{[]string{"echo", "$HOME"}, "echo '$HOME'"},
		{[]string{"a;b"}, "'a;b'"},
		{[]string{"a|b", "x>y", "`id`", "~", "#c", "!", "(x)", "{a,b}", "[x]", "?", "*", "&", `"q"`, `\`},
			`'a|b' 'x>y' '` + "`id`" + `' '~' '#c' '!' '(x)' '{a,b}' '[x]' '?' '*' '&' '"q"' '\'`},
		{[]string{"données"}, "'données'"},
		{[]string{"line\nbreak"}, `$'line\nbreak'`},
		{[]string{"it's\tx\\"}, `$'it\'s\tx\\'`},
		{[]string{"\xff\x01é"}, `$'\xff\x01é'`},
	}
	for _, tt := range tests {
		if got := String(tt.argv); got != tt.want {
			t.Errorf("String(%q) = %s, want %s", tt.argv, got, tt.want)
		}
	}
}

// TestStringShell checks the quoting where it matters: a shell reading String(argv) must
// see exactly argv. It uses bash because $'...' is not POSIX sh.
func TestStringShell(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	argv := []string{"plain", "with space", "it's", "", "$HOME", "a;b", "`id`", "~", "*", "données",
		"line\nbreak", "it's\tx\\", "\xff\x01é", `"q"`, "!x", "'"}
	out, err := exec.Command(bash, "-c", `printf '%s\0' `+String(argv)).Output()
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if !slices.Equal(got, argv) {
		t.Errorf("bash read %q\nwant      %q", got, argv)
	}
}
