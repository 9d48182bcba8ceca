package deb

import "testing"

func TestVersionLess(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"6.1.0-9-amd64", "6.1.0-56-amd64", true},
		{"6.1.0-56-amd64", "6.1.0-9-amd64", false},
		{"6.1.0-56-amd64", "6.12.0-1-amd64", true},
		{"6.1.0-56-amd64", "6.1.0-56-amd64", false},
		{"6.1.0-9-cloud-amd64", "6.1.0-56-cloud-amd64", true},
		{"6.1.0-56-cloud-amd64", "6.1.0-9-cloud-amd64", false},
		{"6.1.0-56-cloud-amd64", "6.12.0-1-cloud-amd64", true},
		{"6.1.0-56-cloud-amd64", "6.1.0-56-cloud-amd64", false},
		{"6.1.0-56", "6.1.0-56-cloud-amd64", true},
		{"6.1.0-056", "6.1.0-56", false},
		{"6.1.0-56", "6.1.0-056", false},
	} {
		if got := VersionLess(tt.a, tt.b); got != tt.want {
			t.Errorf("VersionLess(%q, %q) = %v", tt.a, tt.b, got)
		}
	}
}
