package deploy

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/provisioner/provisioner/partition"
)

// TestPreflightKeepsEveryDigest preflights two images one after the other, as an update
// does before it writes anything: Digest then gives each image's checksum, not only the
// last one's (the update records them all in boot-info.json, the plan record and the
// history). A later ResolveDigests replaces the digest of the image it resolves again,
// also with none, and keeps the others.
func TestPreflightKeepsEveryDigest(t *testing.T) {
	dir := t.TempDir()
	ims := map[string]*partition.Image{}
	for _, name := range []string{"red", "blue"} {
		data := tarOf(t, tar.FormatPAX)
		data = append(data, make([]byte, len(name))...) // other bytes, another digest
		p := filepath.Join(dir, name+".tar")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ims[name] = &partition.Image{Name: name, URL: "file://" + p, Checksum: "sha256:" + sha256Hex(data)}
	}
	d := &Deployer{Fetcher: quickFetcher(0)}
	ctx := context.Background()
	for _, name := range []string{"red", "blue"} {
		if err := d.Preflight(ctx, ims[name]); err != nil {
			t.Fatalf("preflight of %s: %v", name, err)
		}
	}
	for _, name := range []string{"red", "blue"} {
		if got, want := d.Digest(name), ims[name].Checksum; got != want {
			t.Errorf("Digest(%s) after both preflights = %q, want %q", name, got, want)
		}
	}
	red := *ims["red"]
	red.Checksum = ""
	if err := d.ResolveDigests(ctx, []*partition.Image{&red}); err != nil {
		t.Fatal(err)
	}
	if got, blue := d.Digest("red"), d.Digest("blue"); got != "" || blue != ims["blue"].Checksum {
		t.Errorf("after red is resolved again without a checksum: Digest(red) = %q (want none), Digest(blue) = %q (want %q)", got, blue, ims["blue"].Checksum)
	}
}
