package schema_test

import (
	"testing"

	"github.com/provisioner/provisioner/schema"
)

// TestLoadRamdisk: the ramdisk extension loads with an http(s) or file URL and an optional
// checksum file URL; a missing url, another scheme, or a single digest as checksum is an
// error at its pointer.
func TestLoadRamdisk(t *testing.T) {
	runLoadCases(t, []loadCase{
		{
			name: "ramdisk with a checksum file",
			ops:  []op{set("/ramdisk", `{"url": "http://10.0.0.1/ramdisk/", "checksum": "http://10.0.0.1/ramdisk/SHA256SUMS"}`)},
			check: func(t *testing.T, s *schema.Spec) {
				if s.Ramdisk == nil || s.Ramdisk.URL != "http://10.0.0.1/ramdisk/" || s.Ramdisk.Checksum != "http://10.0.0.1/ramdisk/SHA256SUMS" {
					t.Errorf("Ramdisk = %+v", s.Ramdisk)
				}
				if !s.KeepsRamdisk() || !s.Multiboot() {
					t.Errorf("KeepsRamdisk %v, Multiboot %v", s.KeepsRamdisk(), s.Multiboot())
				}
			},
		},
		{
			name: "ramdisk from a file URL, no checksum",
			ops:  []op{set("/ramdisk", `{"url": "file:///srv/ramdisk"}`)},
			check: func(t *testing.T, s *schema.Spec) {
				if s.Ramdisk == nil || s.Ramdisk.URL != "file:///srv/ramdisk" || s.Ramdisk.Checksum != "" {
					t.Errorf("Ramdisk = %+v", s.Ramdisk)
				}
			},
		},
		{
			name: "ramdisk without url",
			ops:  []op{set("/ramdisk", `{"checksum": "http://10.0.0.1/SHA256SUMS"}`)},
			errs: []want{is("/ramdisk/url", "required key is missing")},
		},
		{
			name: "ramdisk url of another scheme",
			ops:  []op{set("/ramdisk", `{"url": "ftp://10.0.0.1/ramdisk"}`)},
			errs: []want{has("/ramdisk/url", `"ftp://10.0.0.1/ramdisk": unsupported scheme ftp: want the http://, https:// or file:// URL`)},
		},
		{
			name: "ramdisk url a plain path",
			ops:  []op{set("/ramdisk", `{"url": "/srv/ramdisk"}`)},
			errs: []want{has("/ramdisk/url", `"/srv/ramdisk": no scheme`)},
		},
		{
			name: "ramdisk url without host",
			ops:  []op{set("/ramdisk", `{"url": "http:///ramdisk"}`)},
			errs: []want{has("/ramdisk/url", `no host`)},
		},
		{
			name: "ramdisk checksum a single digest",
			ops:  []op{set("/ramdisk", `{"url": "http://h/r", "checksum": "sha256:0123"}`)},
			errs: []want{has("/ramdisk/checksum", `unsupported scheme sha256: want the http://, https:// or file:// URL of a checksum file`)},
		},
		{
			name: "ramdisk unknown key",
			ops:  []op{set("/ramdisk", `{"url": "http://h/r", "kernel": "x"}`)},
			errs: []want{has("/ramdisk/kernel", `unknown key "kernel"`)},
		},
	})
}
