// Package vmrun runs QEMU under TCG (no KVM on our machines) for the demo and the
// integration tests: a deploy VM that boots the ramdisk directly, or a disk boot through
// SeaBIOS or OVMF, with the serial console in a file that is polled, never a timing
// assertion. It also has the conductor side: an HTTP server that hands specs and images to
// the VM over QEMU's user network and collects the callback's events.
package vmrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/provisioner/provisioner/internal/run"
)

// OVMF firmware files (Debian's ovmf package): the 4 MiB code and its variable store.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Options describe one VM run.
type Options struct {
	// Kernel, Initrd and Append boot a kernel directly (the deploy ramdisk); without
	// Kernel the VM boots its first disk through the firmware.
	Kernel, Initrd, Append string
	// Disks are raw disk-image files, attached as virtio disks in order (vda, vdb, ...).
	Disks []string
	// UEFI boots OVMF instead of SeaBIOS.
	UEFI bool
	// Net gives the VM a virtio NIC on QEMU's user network (the host is 10.0.2.2).
	Net bool
	// Forward maps host ports to guest ports on the user network, as QEMU's hostfwd
	// ("tcp:127.0.0.1:8080-:9999"); it implies Net.
	Forward []string
	// UUID is the machine's SMBIOS system UUID, which the guest reads in
	// /sys/class/dmi/id/product_uuid ("": QEMU leaves it all zeros).
	UUID string
	// MemoryMiB is the VM's memory (0: 1024).
	MemoryMiB int
	// CPUs is the number of virtual CPUs (0: 1, which TCG runs fastest for one
	// program; more shows what a machine with several cores does side by side).
	CPUs int
	// Dir holds the serial log and OVMF's variable store (required).
	Dir string
	// Until stops the VM as soon as the serial log contains it (nil: wait for the VM to
	// power off).
	Until []byte
	// Timeout kills the VM (0: 10 minutes).
	Timeout time.Duration
	// Run starts QEMU (nil: run.Exec).
	Run run.Runner
}

// Result is what a run left.
type Result struct {
	// Serial is the serial console's output.
	Serial []byte
	// Duration is the VM's wall time.
	Duration time.Duration
	// Matched is set when the VM was stopped because the log contained Until.
	Matched bool
}

// ErrTimeout is matched when the VM was killed at its timeout.
var ErrTimeout = errors.New("the VM did not finish in time")

// SerialLog is the serial log's file name in Options.Dir.
const SerialLog = "serial.log"

// Argv is the QEMU command line for o.
func Argv(o Options) []string {
	mem := o.MemoryMiB
	if mem == 0 {
		mem = 1024
	}
	cpus := max(o.CPUs, 1)
	argv := []string{"qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", strconv.Itoa(cpus),
		"-m", strconv.Itoa(mem), "-display", "none", "-no-reboot", "-serial", "file:" + filepath.Join(o.Dir, SerialLog)}
	if o.UUID != "" {
		argv = append(argv, "-uuid", o.UUID)
	}
	if o.Kernel != "" {
		argv = append(argv, "-kernel", o.Kernel, "-initrd", o.Initrd, "-append", o.Append)
	}
	if o.UEFI {
		argv = append(argv, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+filepath.Join(o.Dir, "OVMF_VARS.fd"))
	}
	for _, d := range o.Disks {
		argv = append(argv, "-drive", "file="+d+",format=raw,if=virtio")
	}
	if o.Net || len(o.Forward) > 0 {
		nic := "user,model=virtio-net-pci"
		for _, f := range o.Forward {
			nic += ",hostfwd=" + f
		}
		argv = append(argv, "-nic", nic)
	} else {
		argv = append(argv, "-nic", "none")
	}
	return argv
}

// Run runs the VM until it powers off, its log shows Until, or the timeout; the serial
// output is returned in every case, with ErrTimeout for a VM that was killed.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Dir == "" {
		return Result{}, errors.New("vmrun: no directory for the serial log")
	}
	if o.Run == nil {
		o.Run = run.Exec{}
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	serial := filepath.Join(o.Dir, SerialLog)
	os.Remove(serial)
	if o.UEFI {
		vars, err := os.ReadFile(OVMFVars)
		if err != nil {
			return Result{}, fmt.Errorf("vmrun: OVMF variable store: %w", err)
		}
		// Each VM writes its own copy of the variable store.
		if err := os.WriteFile(filepath.Join(o.Dir, "OVMF_VARS.fd"), vars, 0o644); err != nil {
			return Result{}, fmt.Errorf("vmrun: %w", err)
		}
	}
	vmCtx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := o.Run.Run(vmCtx, run.Cmd{Argv: Argv(o)})
		done <- err
	}()
	var res Result
	var err error
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case err = <-done:
			break wait
		case <-tick.C:
			if o.Until == nil {
				continue
			}
			if log, _ := os.ReadFile(serial); bytes.Contains(log, o.Until) {
				res.Matched = true
				cancel()
				<-done
				err = nil
				break wait
			}
		}
	}
	res.Duration = time.Since(start)
	res.Serial, _ = os.ReadFile(serial)
	switch {
	case res.Matched:
		return res, nil
	case errors.Is(vmCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		return res, fmt.Errorf("%w (%v)", ErrTimeout, o.Timeout)
	case err != nil:
		return res, fmt.Errorf("qemu: %w", err)
	}
	return res, nil
}
