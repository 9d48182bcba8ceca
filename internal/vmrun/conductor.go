package vmrun

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/provisioner/provisioner/internal/agent"
)

// Conductor plays an Ironic-style conductor for a VM: it serves files (the spec, images)
// and receives the agent's events. It listens on the host's loopback, which QEMU's user
// network shows the guest as 10.0.2.2.
type Conductor struct {
	// Token is the bearer token the callback must carry.
	Token string
	// OnEvent, when set, sees every event as it arrives (the demo prints them).
	OnEvent func(agent.Event)

	srv    *http.Server
	port   int
	mu     sync.Mutex
	blobs  map[string][]byte
	paths  map[string]string
	events []agent.Event
}

// NewConductor starts serving on 127.0.0.1 at a free port.
func NewConductor(token string) (*Conductor, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("conductor: %w", err)
	}
	c := &Conductor{Token: token, blobs: map[string][]byte{}, paths: map[string]string{}, port: ln.Addr().(*net.TCPAddr).Port}
	c.srv = &http.Server{Handler: http.HandlerFunc(c.serve), ReadHeaderTimeout: 10 * time.Second}
	go c.srv.Serve(ln)
	return c, nil
}

// Close stops serving.
func (c *Conductor) Close() error { return c.srv.Close() }

// Put serves data at /name.
func (c *Conductor) Put(name string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.blobs[name] = data
}

// PutFile serves the file at path at /name, read on each request (large images).
func (c *Conductor) PutFile(name, path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paths[name] = path
}

// GuestURL is the URL of /name as the VM sees it.
func (c *Conductor) GuestURL(name string) string {
	return "http://10.0.2.2:" + strconv.Itoa(c.port) + "/" + name
}

// HostURL is the URL of /name as the host sees it.
func (c *Conductor) HostURL(name string) string {
	return "http://127.0.0.1:" + strconv.Itoa(c.port) + "/" + name
}

// CallbackName is the path the callback posts to.
const CallbackName = "events"

// Events returns the events received so far, in arrival order.
func (c *Conductor) Events() []agent.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]agent.Event(nil), c.events...)
}

// Last returns the last event received, and whether there is one.
func (c *Conductor) Last() (agent.Event, bool) {
	ev := c.Events()
	if len(ev) == 0 {
		return agent.Event{}, false
	}
	return ev[len(ev)-1], true
}

// EventLog renders the events as JSON lines, for failure messages.
func (c *Conductor) EventLog() string {
	var b strings.Builder
	for _, e := range c.Events() {
		data, _ := json.Marshal(e)
		b.Write(data)
		b.WriteByte('\n')
	}
	return b.String()
}

func (c *Conductor) serve(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	if name == CallbackName {
		c.event(w, r)
		return
	}
	c.mu.Lock()
	blob, ok := c.blobs[name]
	path, isFile := c.paths[name]
	c.mu.Unlock()
	switch {
	case ok:
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(blob))
	case isFile:
		f, err := os.Open(path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		http.ServeContent(w, r, name, time.Time{}, f)
	default:
		http.NotFound(w, r)
	}
}

func (c *Conductor) event(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+c.Token {
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	var e agent.Event
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&e); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.events = append(c.events, e)
	on := c.OnEvent
	c.mu.Unlock()
	if on != nil {
		on(e)
	}
	w.WriteHeader(http.StatusNoContent)
}
