package engine

import (
	"fmt"
	"io"
	"sync"
)

// Phases of a deploy, in order. An agent reports the phase a failure happened in as the
// failed step.
const (
	PhasePlan       = "plan"       // resolving and probing disks, planning
	PhasePartition  = "partition"  // writing tables, md, LVM, filesystems
	PhaseImages     = "images"     // deploying the images
	PhaseBootloader = "bootloader" // grub, boot-info.json, grubenv
)

// Event is one step of a run's progress: the one channel through which the engine
// reports what it does, to a terminal (TextEvents), an agent's callback, or both (Tee).
type Event struct {
	// Phase, when set, is the Phase constant of the phase this event begins or belongs
	// to; "" for a line within the current phase.
	Phase string
	// Image names the image for byte progress events ("" otherwise).
	Image string
	// Done is the bytes of the image read so far; Total its size, -1 when unknown.
	Done, Total int64
	// Step and Steps number a step of the partitions policy (from 1 of Steps); 0 for
	// other events.
	Step, Steps int
	// Message is a short line for people.
	Message string
}

// emitter calls the Events hook when there is one.
type emitter func(Event)

func (e emitter) emit(ev Event) {
	if e != nil {
		e(ev)
	}
}

// TextEvents renders events as lines for a person: each message on its line, a policy
// step as "[n/of] step". Byte progress is left out: the image's transfer draws its own
// line with rate and ETA (deploy.Progress), which the events only summarise. Images
// deploy concurrently, so the lines are written whole, one at a time.
func TextEvents(w io.Writer) func(Event) {
	var mu sync.Mutex
	return func(ev Event) {
		var line string
		switch {
		case ev.Steps > 0:
			line = fmt.Sprintf("[%d/%d] %s\n", ev.Step, ev.Steps, ev.Message)
		case ev.Message != "":
			line = ev.Message + "\n"
		default:
			return
		}
		mu.Lock()
		defer mu.Unlock()
		io.WriteString(w, line)
	}
}

// Tee passes each event to every non-nil sink, in order.
func Tee(sinks ...func(Event)) func(Event) {
	var live []func(Event)
	for _, f := range sinks {
		if f != nil {
			live = append(live, f)
		}
	}
	return func(ev Event) {
		for _, f := range live {
			f(ev)
		}
	}
}
