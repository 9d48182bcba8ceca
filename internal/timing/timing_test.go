package timing

import (
	"testing"
	"time"
)

func TestMedianAndSeconds(t *testing.T) {
	odd := []time.Duration{9300 * time.Millisecond, 3500 * time.Millisecond, 4100 * time.Millisecond}
	if got := Median(odd); got != 4100*time.Millisecond {
		t.Errorf("Median(odd) = %v", got)
	}
	if odd[0] != 9300*time.Millisecond {
		t.Error("Median reordered its argument")
	}
	if got := Median([]time.Duration{time.Second, 3 * time.Second}); got != 2*time.Second {
		t.Errorf("Median(even) = %v", got)
	}
	if Median(nil) != 0 {
		t.Error("Median(nil) != 0")
	}
	if got := Seconds(odd); got != "9.3, 3.5, 4.1 s" {
		t.Errorf("Seconds = %q", got)
	}
}
