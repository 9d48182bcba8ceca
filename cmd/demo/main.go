// Command demo is `make demo`: the provisioner's main job end to end on one machine. It
// builds the deploy ramdisk and two small bootable images, boots the ramdisk in QEMU
// (TCG) with a blank disk-image file and provisioner.spec pointing at the demo spec,
// which the demo serves with the images over QEMU's user network while it plays the
// conductor (it prints the callback's events), prints how long each phase took and the
// boot-info of the final event, then boots the deployed disk once and shows the default
// image coming up.
//
//	demo [-out out] [-spec examples/demo.json] [-flavour cloud-amd64] [-go go]
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/provisioner/provisioner/initramfs"
	"github.com/provisioner/provisioner/internal/agent"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/internal/testimage"
	"github.com/provisioner/provisioner/internal/vmrun"
)

func main() {
	if err := mainErr(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// demoOptions are the demo's flags.
type demoOptions struct {
	out, specPath, flavour, goCmd string
	diskGiB                       int64
}

// mainErr parses the flags and runs the demo's steps in order: ramdisk, images, the
// deploy in QEMU, one boot of the deployed disk.
func mainErr(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var o demoOptions
	fs.StringVar(&o.out, "out", "out", "output directory")
	fs.StringVar(&o.specPath, "spec", "examples/demo.json", "the spec to deploy (its images are built and served by the demo)")
	fs.StringVar(&o.flavour, "flavour", "cloud-amd64", "ramdisk kernel: cloud-amd64 (boots faster under TCG) or amd64")
	fs.StringVar(&o.goCmd, "go", "go", "the go command that builds the provisioner for the ramdisk")
	fs.Int64Var(&o.diskGiB, "disk-gib", 2, "size of the disk-image file in GiB")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	total := time.Now()

	rd, err := buildRamdisk(ctx, o)
	if err != nil {
		return err
	}
	if err := buildImages(ctx, o.out); err != nil {
		return err
	}
	c, err := vmrun.NewConductor(token())
	if err != nil {
		return err
	}
	defer c.Close()
	spec, err := serveSpec(c, o.specPath)
	if err != nil {
		return err
	}
	c.Put("spec.json", spec)
	disk, vmDir, err := prepareDisk(o)
	if err != nil {
		return err
	}
	if err := deployInVM(ctx, c, rd, o, disk, filepath.Join(vmDir, "deploy")); err != nil {
		return err
	}
	if err := bootOnce(ctx, disk, filepath.Join(vmDir, "boot")); err != nil {
		return err
	}
	fmt.Printf("==> done in %v; serial logs in %s/{deploy,boot}/%s\n", time.Since(total).Round(time.Second), vmDir, vmrun.SerialLog)
	return nil
}

// step announces one stage of the demo.
func step(format string, a ...any) { fmt.Printf("==> "+format+"\n", a...) }

// buildRamdisk builds the deploy ramdisk into the output directory.
func buildRamdisk(ctx context.Context, o demoOptions) (*initramfs.Result, error) {
	step("building the deploy ramdisk (%s kernel)", o.flavour)
	start := time.Now()
	rd, err := initramfs.Build(ctx, initramfs.Options{Flavour: o.flavour, OutDir: o.out, GoCmd: strings.Fields(o.goCmd), Run: run.Exec{}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	fmt.Printf("    %s (kernel %s), %s: %.1f MiB, %v\n", rd.Kernel, rd.KernelVersion, rd.Initramfs, float64(rd.Size)/(1<<20), time.Since(start).Round(100*time.Millisecond))
	return rd, nil
}

// buildImages writes the two bootable test images the demo spec names, each with its
// checksum file, into out/images.
func buildImages(ctx context.Context, out string) error {
	step("building two bootable test images (Debian cloud kernel + busybox)")
	kit, err := testimage.Prepare(ctx, run.Exec{}, testimage.DefaultCacheDir())
	if err != nil {
		return err
	}
	imgDir := filepath.Join(out, "images")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return err
	}
	for _, name := range []string{"a", "b"} {
		o := testimage.Options{Name: name, Marker: "BOOTED-IMAGE-" + strings.ToUpper(name), PrettyName: "Tiny test image " + strings.ToUpper(name)}
		p := filepath.Join(imgDir, name+".tar.gz")
		sum, err := kit.WriteFile(p, o)
		if err != nil {
			return err
		}
		if err := os.WriteFile(p+".sha256", fmt.Appendf(nil, "%x  %s\n", sum, filepath.Base(p)), 0o644); err != nil {
			return err
		}
		fmt.Printf("    %s: %s\n", p, o.PrettyName)
	}
	return nil
}

// prepareDisk creates the blank, sparse disk-image file and vmDir's deploy and boot
// directories, which receive the two VMs' serial logs.
func prepareDisk(o demoOptions) (disk, vmDir string, err error) {
	disk = filepath.Join(o.out, "demo-disk.img")
	os.Remove(disk)
	if err := makeSparse(disk, o.diskGiB<<30); err != nil {
		return "", "", err
	}
	vmDir = filepath.Join(o.out, "vm")
	for _, d := range []string{filepath.Join(vmDir, "deploy"), filepath.Join(vmDir, "boot")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", "", err
		}
	}
	return disk, vmDir, nil
}

// deployInVM boots the ramdisk against the disk, prints the callback's events, and
// writes and prints the boot-info of the final event.
func deployInVM(ctx context.Context, c *vmrun.Conductor, rd *initramfs.Result, o demoOptions, disk, deployDir string) error {
	step("deploying %s onto %s in QEMU: the ramdisk fetches it from %s", o.specPath, disk, c.GuestURL("spec.json"))
	start := time.Now()
	c.OnEvent = func(e agent.Event) { printEvent(start, e) }
	res, err := vmrun.Run(ctx, vmrun.Options{
		// Two virtual CPUs, as a machine being deployed has several cores: the deploy runs
		// kernel discovery and grub's installs side by side, which one only interleaves.
		Kernel: rd.Kernel, Initrd: rd.Initramfs, Net: true, Disks: []string{disk}, Dir: deployDir, Timeout: 15 * time.Minute, CPUs: 2,
		Append: "console=ttyS0 quiet panic=-1 provisioner.spec=" + c.GuestURL("spec.json") +
			" provisioner.callback=" + c.GuestURL(vmrun.CallbackName) + " provisioner.token=" + c.Token + " provisioner.after=poweroff",
	})
	last, ok := c.Last()
	if err != nil || !ok || last.Type != "succeeded" || last.BootInfo == nil {
		fmt.Printf("serial console of the deploy VM:\n%s\n", res.Serial)
		return fmt.Errorf("the deploy did not succeed (%v); last event: %+v", err, last)
	}
	fmt.Printf("    deployed in %v (ramdisk boot, DHCP, partitioning, both images, grub)\n", res.Duration.Round(100*time.Millisecond))
	printDurations(os.Stdout, last.Durations)
	// The durations are kept as the event carried them, to compare runs.
	if d, err := json.MarshalIndent(last.Durations, "", "  "); err == nil {
		if err := os.WriteFile(filepath.Join(o.out, "durations.json"), append(d, '\n'), 0o644); err != nil {
			return err
		}
	}
	data, err := last.BootInfo.Encode()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "boot-info.json"), data, 0o644); err != nil {
		return err
	}
	step("boot-info.json from the final event (also in %s)", filepath.Join(o.out, "boot-info.json"))
	engine.Summary(os.Stdout, last.BootInfo)
	return nil
}

// printDurations prints how long each phase of the deploy took, from the final event
// (the ramdisk's boot and DHCP come before the plan phase and are not in it).
func printDurations(w io.Writer, d *engine.Durations) {
	if d == nil {
		fmt.Fprintln(w, "    (the final event carries no durations)")
		return
	}
	fmt.Fprintln(w, "==> phases of the deploy, from the final event:")
	for _, l := range d.Lines() {
		fmt.Fprintf(w, "    %s\n", l)
	}
}

// bootOnce boots the deployed disk under SeaBIOS and shows the default image's marker
// line.
func bootOnce(ctx context.Context, disk, bootDir string) error {
	step("booting %s once (SeaBIOS -> grub -> the default image)", disk)
	res, err := vmrun.Run(ctx, vmrun.Options{Disks: []string{disk}, Dir: bootDir, Timeout: 5 * time.Minute})
	line := regexp.MustCompile(`BOOTED-IMAGE-[A-Z0-9]+ root=\S+ uptime=[0-9.]+`).Find(res.Serial)
	if err != nil || line == nil {
		fmt.Printf("serial console:\n%s\n", res.Serial)
		return errors.Join(errors.New("the deployed disk did not boot into a test image"), err)
	}
	fmt.Printf("    %s (booted in %v)\n", line, res.Duration.Round(100*time.Millisecond))
	return nil
}

// serveSpec loads the spec and serves every image (and checksum file) it names that is a
// local path, rewriting the spec to the URLs the VM sees.
func serveSpec(c *vmrun.Conductor, path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	imgs, _ := doc["images"].([]any)
	for _, v := range imgs {
		im, _ := v.(map[string]any)
		for _, key := range []string{"url", "image_pull_url", "checksum"} {
			s, ok := im[key].(string)
			if !ok || strings.Contains(s, "://") || !strings.Contains(s, "/") {
				continue // a URL already, or a digest
			}
			if _, err := os.Stat(s); err != nil {
				return nil, fmt.Errorf("%s: image %v: %w", path, im["name"], err)
			}
			c.PutFile(filepath.Base(s), s)
			im[key] = c.GuestURL(filepath.Base(s))
		}
	}
	return json.MarshalIndent(doc, "", "  ")
}

// printEvent prints one callback event; image progress only at each quarter.
func printEvent(start time.Time, e agent.Event) {
	at := fmt.Sprintf("[%5.1fs]", time.Since(start).Seconds())
	switch {
	case e.Type == "progress":
		if e.Total > 0 && e.Done == e.Total {
			fmt.Printf("    %s image %s: %.1f MiB transferred and verified\n", at, e.Image, float64(e.Done)/(1<<20))
		}
	case e.Type == "phase":
		fmt.Printf("    %s phase %s: %s\n", at, e.Phase, e.Message)
	case e.Type == "failed":
		fmt.Printf("    %s FAILED in %s: %s\n", at, e.Step, e.Error)
	default:
		fmt.Printf("    %s %s\n", at, e.Type)
	}
}

func makeSparse(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// token is the demo's bearer token: random per run.
func token() string {
	return rand.Text()
}
