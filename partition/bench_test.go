package partition

import (
	"os"
	"testing"

	"github.com/provisioner/provisioner/schema"
)

// BenchmarkPlan measures planning a whole layout (disks, vg, images, fstabs).
func BenchmarkPlan(b *testing.B) {
	for _, name := range []string{"multiboot-two-images", "lvm", "raid1"} {
		f, err := os.Open("../examples/" + name + ".json")
		if err != nil {
			b.Fatal(err)
		}
		spec, _, err := schema.Load(f)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Plan(spec, nil, "bench"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
