package run

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestInteractive(t *testing.T) {
	var out bytes.Buffer
	if err := Interactive(context.Background(), []string{"sh", "-c", "read x; echo got $x"}, strings.NewReader("hello\n"), &out, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "got hello\n" {
		t.Errorf("output %q", out.String())
	}
	err := Interactive(context.Background(), []string{"sh", "-c", "exit 3"}, strings.NewReader(""), &out, &out)
	var rerr *Error
	if !errors.As(err, &rerr) || rerr.ExitCode != 3 {
		t.Errorf("err = %v", err)
	}
}
