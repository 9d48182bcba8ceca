package schema_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/provisioner/provisioner/schema"
)

func TestIsRsyncSource(t *testing.T) {
	for src, want := range map[string]bool{
		"10.0.0.1::images/centos/":         true,
		"mirror.example::root":             true,
		"user@mirror.example::root/x":      true,
		"[fd00::1]::images/centos/":        true,
		"rsync://10.0.0.1/images/centos/":  true,
		"RSYNC://10.0.0.1:8873/images/":    true,
		"http://example.com/centos.tar.gz": false,
		"/srv/images/a::b.tar":             false,
		"::images":                         false,
		"[fd00::1]/x::y":                   false,
		"host:path/one-colon":              false,
		"file:///srv/centos.tar":           false,
	} {
		if got := schema.IsRsyncSource(src); got != want {
			t.Errorf("IsRsyncSource(%q) = %v, want %v", src, got, want)
		}
	}
}

// TestRsyncSourceRules: an rsync source validates without a checksum, and a checksum
// or a format on one is an error at its pointer, whichever key names the source.
func TestRsyncSourceRules(t *testing.T) {
	for _, src := range []op{
		set("/images/0/url", `"10.0.0.1::images/centos/"`),
		set("/images/1/image_pull_url", `"rsync://10.0.0.1:8873/images/ubuntu/"`),
	} {
		if _, _, err := load(t, mutate(t, src)); err != nil {
			t.Fatalf("%s: %v", src.arg, err)
		}
	}
	for _, tc := range []struct {
		name string
		ops  []op
		ptr  string
	}{
		{"checksum", []op{set("/images/0/url", `"10.0.0.1::images/centos/"`), set("/images/0/checksum", `"sha256:`+hex64+`"`)}, "/images/0/checksum"},
		{"checksum file", []op{set("/images/1/image_pull_url", `"rsync://h/m/"`), set("/images/1/checksum", `"http://h/SHA256SUMS"`)}, "/images/1/checksum"},
		{"format", []op{set("/images/0/url", `"h::m/"`), set("/images/0/format", `"tar"`)}, "/images/0/format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := load(t, mutate(t, tc.ops...))
			var ve *schema.ValidationError
			if !errors.As(err, &ve) || !slices.ContainsFunc(ve.Problems, func(p schema.Problem) bool { return p.Pointer == tc.ptr }) {
				t.Fatalf("want a problem at %s, got %v", tc.ptr, err)
			}
		})
	}
}

const hex64 = "abababababababababababababababababababababababababababababababab"
