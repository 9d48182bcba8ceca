package vmrun

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/agent"
	"github.com/provisioner/provisioner/internal/run"
)

func TestArgv(t *testing.T) {
	got := run.String(Argv(Options{Kernel: "/k", Initrd: "/i", Append: "console=ttyS0 quiet", Disks: []string{"/d.img"}, Net: true, Dir: "/w", UEFI: true}))
	want := "qemu-system-x86_64 -machine q35 -accel tcg -cpu max -smp 1 -m 1024 -display none -no-reboot -serial file:/w/serial.log " +
		"-kernel /k -initrd /i -append 'console=ttyS0 quiet' " +
		"-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd -drive if=pflash,format=raw,unit=1,file=/w/OVMF_VARS.fd " +
		"-drive file=/d.img,format=raw,if=virtio -nic user,model=virtio-net-pci"
	if got != want {
		t.Errorf("argv:\n%s\nwant:\n%s", got, want)
	}
	got = run.String(Argv(Options{Disks: []string{"/d.img"}, Dir: "/w", UUID: "5f2c6a4e-0d1b-4c3a-9e8f-7a6b5c4d3e2f"}))
	if !strings.Contains(got, " -serial file:/w/serial.log -uuid 5f2c6a4e-0d1b-4c3a-9e8f-7a6b5c4d3e2f -drive ") {
		t.Errorf("argv with a UUID: %s", got)
	}
	got = run.String(Argv(Options{Disks: []string{"/d.img"}, Dir: "/w", Forward: []string{"tcp:127.0.0.1:8080-:9999"}}))
	if !strings.HasSuffix(got, "-drive file=/d.img,format=raw,if=virtio -nic user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:8080-:9999") {
		t.Errorf("argv with a forward: %s", got)
	}
	got = run.String(Argv(Options{Disks: []string{"/d.img"}, Dir: "/w", CPUs: 2}))
	if !strings.Contains(got, " -cpu max -smp 2 -m 1024 ") {
		t.Errorf("argv with 2 CPUs: %s", got)
	}
}

// fakeVM writes lines to the serial log like a guest, then blocks until killed or exits.
func fakeVM(t *testing.T, dir string, lines []string, exit bool) run.Runner {
	return &run.Fake{Handler: func(c run.Call) (run.Result, error) {
		f, err := os.Create(filepath.Join(dir, SerialLog))
		if err != nil {
			t.Error(err)
			return run.Result{}, err
		}
		defer f.Close()
		for _, l := range lines {
			io.WriteString(f, l+"\n")
		}
		if exit {
			return run.Result{}, nil
		}
		time.Sleep(2 * time.Second) // Fake has no ctx: a "hung" guest
		return run.Result{}, errors.New("killed")
	}}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	res, err := Run(context.Background(), Options{Dir: dir, Run: fakeVM(t, dir, []string{"SeaBIOS", "BOOTED-IMAGE-A root=x"}, true)})
	if err != nil || !bytes.Contains(res.Serial, []byte("BOOTED-IMAGE-A")) || res.Matched {
		t.Errorf("powered-off VM: %v %q %v", err, res.Serial, res.Matched)
	}
	res, err = Run(context.Background(), Options{Dir: dir, Until: []byte("login:"), Run: fakeVM(t, dir, []string{"booting", "login:"}, false)})
	if err != nil || !res.Matched {
		t.Errorf("until: %v matched %v", err, res.Matched)
	}
	_, err = Run(context.Background(), Options{Dir: dir, Timeout: 300 * time.Millisecond, Run: &run.Exec{}, Kernel: "/nonexistent"})
	if err == nil {
		t.Error("no error for a VM that cannot start")
	}
}

func TestConductor(t *testing.T) {
	c, err := NewConductor("tok")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var seen []string
	c.OnEvent = func(e agent.Event) { seen = append(seen, e.Type) }
	c.Put("spec.json", []byte(`{}`))
	f := filepath.Join(t.TempDir(), "a.tar.gz")
	os.WriteFile(f, []byte("image"), 0o644)
	c.PutFile("a.tar.gz", f)
	if !strings.HasPrefix(c.GuestURL("x"), "http://10.0.2.2:") {
		t.Errorf("guest URL %s", c.GuestURL("x"))
	}
	for name, want := range map[string]string{"spec.json": "{}", "a.tar.gz": "image"} {
		resp, err := http.Get(c.HostURL(name))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Errorf("%s: %q", name, b)
		}
	}
	post := func(token, body string) int {
		req, _ := http.NewRequest(http.MethodPost, c.HostURL(CallbackName), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("bad", `{"type":"started"}`); code != http.StatusUnauthorized {
		t.Errorf("bad token: %d", code)
	}
	if code := post("tok", `{"type":"started"}`); code != http.StatusNoContent {
		t.Errorf("event: %d", code)
	}
	post("tok", `{"type":"succeeded","boot_info":{"elements":[],"current_element":0,"multiboot_partition":""}}`)
	if last, ok := c.Last(); !ok || last.Type != "succeeded" || last.BootInfo == nil || strings.Join(seen, ",") != "started,succeeded" {
		t.Errorf("events %v, last %+v", seen, last)
	}
}
