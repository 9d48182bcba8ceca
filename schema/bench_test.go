package schema

import (
	"bytes"
	"os"
	"testing"
)

// BenchmarkLoad measures schema plus semantic validation of a realistic document; a
// conductor may validate many specs per second, the ramdisk one.
func BenchmarkLoad(b *testing.B) {
	for _, name := range []string{"multiboot-two-images", "lvm"} {
		doc, err := os.ReadFile("../examples/" + name + ".json")
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Load(bytes.NewReader(doc)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoadInvalid measures the error path, which walks the validator's error tree.
func BenchmarkLoadInvalid(b *testing.B) {
	doc := []byte(`{"images":[{"name":"a","url":"x","target":"/","bogus":1}],"partitions":[{"type":"disk","id":{"type":"name","value":"vda"},"volumes":[{"type":"partition","size":"101%","mount":"/","file_sytem":"ext4"},{"type":"partition","size":true}]}]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Load(bytes.NewReader(doc)); err == nil {
			b.Fatal("invalid document accepted")
		}
	}
}
