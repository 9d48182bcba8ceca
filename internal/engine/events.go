package engine

// Phases of a deploy, in order. An agent reports the phase a failure happened in as the
// failed step.
const (
	PhasePlan       = "plan"       // resolving and probing disks, planning
	PhasePartition  = "partition"  // writing tables, md, LVM, filesystems
	PhaseImages     = "images"     // deploying the images
	PhaseBootloader = "bootloader" // grub, boot-info.json, grubenv
)

// Event is one step of a deploy's progress.
type Event struct {
	// Phase is one of the Phase constants.
	Phase string
	// Image names the image for progress events ("" otherwise).
	Image string
	// Done is the bytes of the image read so far; Total its size, -1 when unknown.
	Done, Total int64
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
