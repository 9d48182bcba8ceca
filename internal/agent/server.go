package agent

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// ErrNoToken is returned by Serve for a Server without a Token that is not Insecure.
var ErrNoToken = errors.New("the agent API needs a bearer token (or Insecure to run without one)")

const (
	defaultMaxBody    = 4 << 20 // a provision.json is a few KiB; schema.Load caps it at 4 MiB too
	maxPowerBody      = 64 << 10
	defaultPowerDelay = 500 * time.Millisecond
	// powerFlushTimeout bounds how long a power action waits for queued events: the
	// conductor wants the final event, but an unreachable one must not stop a reboot.
	powerFlushTimeout = 30 * time.Second
	shutdownTimeout   = 10 * time.Second
)

// Server serves the agent API over HTTP(S):
//
//	GET  /v1/status     the Agent's Status
//	POST /v1/deploy     body: provision.json; 202, 400 with problems, 409 while busy, 413
//	GET  /v1/plan       the last accepted spec's plan (partition.Layout); 404 before one
//	GET  /v1/boot-info  the last successful deploy's boot info; 404 before one
//	POST /v1/power      body: {"action": "reboot"|"poweroff"|"kexec"}; 202, then the action
//
// On a deployed node (Agent.NodeAPI set) it also serves, and POST /v1/deploy answers 409:
//
//	POST /v1/reload     body: ReloadRequest; 202, then status as for a deploy; 400 naming
//	                    the bad field; 409 while another operation runs
//	POST /v1/update     body: UpdateRequest; 400 with the spec's problems (pointers under
//	                    /spec) or naming the bad option; with dry_run 200 and the
//	                    break-down (partition.Breakdown), else 202, then status as for a
//	                    reload with the outcome in Status.Update; 409 while another
//	                    operation runs
//	POST /v1/confirm    200 with Node.Confirm's answer; 409 while a reload or update runs
//	GET  /v1/boot       200 with Node.Boot's answer (list --json); 409 while a reload or
//	                    an update runs
//
// Without a Node these paths answer 404, as any unknown path does. Every request needs "Authorization: Bearer <Token>" (401 otherwise). Errors are JSON
// objects {"error": "..."}; a method not listed answers 405 with Allow.
type Server struct {
	Agent *Agent
	// Token is the bearer token every request must carry. It is required: with an
	// empty Token the API refuses every request and Serve fails with ErrNoToken, unless
	// Insecure is set, because whoever reaches the port could otherwise wipe the disks.
	Token string
	// Insecure allows an empty Token, disabling authentication (tests, closed labs).
	Insecure bool
	// MaxBody bounds the bodies of POST /v1/deploy and POST /v1/update (0: 4 MiB);
	// past it the answer is 413.
	MaxBody int64
	// PowerDelay is the wait between answering POST /v1/power and running the action,
	// so the response reaches the client first (0: 500 ms).
	PowerDelay time.Duration
	// Log receives request problems and power actions (nil: discarded).
	Log *slog.Logger

	mu   sync.Mutex
	base context.Context // Serve's ctx: deploys and power actions run under it
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// baseContext is the context deploys and power actions outlive their request with:
// Serve's, or, for a Handler mounted elsewhere, the request's without its cancellation.
func (s *Server) baseContext(r *http.Request) context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.base != nil {
		return s.base
	}
	return context.WithoutCancel(r.Context())
}

// Handler returns the API's handler (authentication included).
func (s *Server) Handler() http.Handler {
	routes := map[string]map[string]http.HandlerFunc{
		"/v1/status":    {http.MethodGet: s.handleStatus},
		"/v1/deploy":    {http.MethodPost: s.handleDeploy},
		"/v1/plan":      {http.MethodGet: s.handlePlan},
		"/v1/boot-info": {http.MethodGet: s.handleBootInfo},
		"/v1/power":     {http.MethodPost: s.handlePower},
	}
	if s.Agent != nil && s.Agent.NodeAPI != nil {
		maps.Copy(routes, s.nodeRoutes())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Authentication comes before routing, so an unauthenticated client learns
		// nothing, not even which paths exist.
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="provisioner-agent"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		methods, ok := routes[r.URL.Path]
		if !ok {
			writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
			return
		}
		h, ok := methods[r.Method]
		if !ok {
			allow := slices.Sorted(maps.Keys(methods))
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path)
			return
		}
		h(w, r)
	})
}

// authorized checks the bearer token in constant time. Both sides are hashed first so
// that not even the token's length leaks through timing.
func (s *Server) authorized(r *http.Request) bool {
	if s.Token == "" {
		return s.Insecure
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	want := sha256.Sum256([]byte(s.Token))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Agent.Status())
}

// specError is the 400 answer for a spec that does not load.
type specError struct {
	Error    string           `json:"error"`
	Problems []schema.Problem `json:"problems"`
}

// maxBody is the bound of a body carrying a spec: MaxBody, or 4 MiB.
func (s *Server) maxBody() int64 {
	if s.MaxBody <= 0 {
		return defaultMaxBody
	}
	return s.MaxBody
}

func (s *Server) handleDeploy(w http.ResponseWriter, r *http.Request) {
	if s.Agent.NodeAPI != nil {
		// The endpoint stays, answering why, so that a conductor pointed at the wrong
		// agent learns it; the spec is not even read.
		writeError(w, http.StatusConflict, ErrDeployedNode.Error())
		return
	}
	limit := s.maxBody()
	spec, warns, err := schema.Load(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		var ve *schema.ValidationError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("spec larger than %d bytes", limit))
		case errors.As(err, &ve):
			writeJSON(w, http.StatusBadRequest, specError{Error: "invalid spec", Problems: nonNil(ve.Problems)})
		default:
			writeError(w, http.StatusBadRequest, err.Error())
		}
		return
	}
	if err := s.Agent.Start(s.baseContext(r), spec, nil); err != nil {
		if errors.Is(err, ErrBusy) || errors.Is(err, ErrPowerPending) || errors.Is(err, ErrDeployedNode) {
			writeError(w, http.StatusConflict, err.Error())
			return
		}
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.log().Info("deploy accepted", "remote", r.RemoteAddr)
	writeJSON(w, http.StatusAccepted, struct {
		State    string           `json:"state"`
		Warnings []schema.Problem `json:"warnings,omitempty"`
	}{StateDeploying, warns})
}

func (s *Server) handlePlan(w http.ResponseWriter, r *http.Request) {
	l, err := s.Agent.CurrentPlan(r.Context())
	if err != nil {
		var le *partition.LayoutError
		switch {
		case errors.Is(err, ErrNoSpec):
			writeError(w, http.StatusNotFound, err.Error())
		case errors.Is(err, ErrBusy):
			writeError(w, http.StatusConflict, "a deploy is running: its plan is known when it ends")
		case errors.Is(err, errors.ErrUnsupported):
			writeError(w, http.StatusNotImplemented, err.Error())
		case errors.As(err, &le):
			// The spec is valid but does not fit this machine's disks.
			writeJSON(w, http.StatusUnprocessableEntity, specError{Error: "the spec does not fit this machine", Problems: nonNil(le.Problems)})
		default:
			writeError(w, http.StatusInternalServerError, err.Error())
		}
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) handleBootInfo(w http.ResponseWriter, r *http.Request) {
	bi := s.Agent.BootInfo()
	if bi == nil {
		writeError(w, http.StatusNotFound, "no successful deploy yet")
		return
	}
	// Encode is boot-info.json's own form (empty lists as [], not null), so this
	// answer is byte for byte what was written to the disk.
	data, err := bi.Encode()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

func (s *Server) handlePower(w http.ResponseWriter, r *http.Request) {
	if s.Agent.Power == nil {
		writeError(w, http.StatusNotImplemented, "power actions are not available")
		return
	}
	var req struct {
		Action string `json:"action"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPowerBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad power request: "+err.Error())
		return
	}
	switch req.Action {
	case ActionReboot, ActionPoweroff, ActionKexec:
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown power action %q: want reboot, poweroff or kexec", req.Action))
		return
	}
	if req.Action == ActionKexec && s.Agent.NodeAPI != nil {
		// kexec loads a kernel without grub: a pending trial would not be counted, and
		// the entry grub would pick (a trial, a one-shot entry) not booted.
		writeError(w, http.StatusBadRequest, "kexec is not available on a deployed node: it would bypass grub and a pending trial's count; use reboot")
		return
	}
	if err := s.Agent.beginPower(); err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	s.log().Info("power action accepted", "action", req.Action, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusAccepted, struct {
		Action string `json:"action"`
	}{req.Action})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	go s.power(s.baseContext(r), req.Action)
}

// power runs an accepted action once its response is on its way and the queued events
// are delivered. If the action fails (or ctx ends first), the agent is usable again.
func (s *Server) power(ctx context.Context, action string) {
	delay := s.PowerDelay
	if delay <= 0 {
		delay = defaultPowerDelay
	}
	t := time.NewTimer(delay)
	select {
	case <-ctx.Done():
		t.Stop()
		s.log().Warn("power action dropped: shutting down", "action", action)
		s.Agent.endPower()
		return
	case <-t.C:
	}
	fctx, cancel := context.WithTimeout(ctx, powerFlushTimeout)
	if err := s.Agent.Flush(fctx); err != nil {
		s.log().Warn("power action: events not all delivered", "err", err)
	}
	cancel()
	if err := s.Agent.Power(ctx, action); err != nil {
		s.log().Error("power action failed", "action", action, "err", err)
		s.Agent.endPower()
	}
}

// Serve listens on addr (TLS when certFile and keyFile are set) and serves the API until
// ctx is done, then shuts down gracefully. Deploys started through it run under ctx.
func (s *Server) Serve(ctx context.Context, addr, certFile, keyFile string) error {
	if err := s.check(certFile, keyFile); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("agent API: %w", err)
	}
	return s.ServeListener(ctx, ln, certFile, keyFile)
}

// ServeListener is Serve on a listener the caller opened (it is closed on return).
func (s *Server) ServeListener(ctx context.Context, ln net.Listener, certFile, keyFile string) error {
	if err := s.check(certFile, keyFile); err != nil {
		ln.Close()
		return err
	}
	s.mu.Lock()
	s.base = ctx
	s.mu.Unlock()
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log().Handler(), slog.LevelWarn),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12},
	}
	stopped := make(chan struct{})
	shutdownDone := make(chan struct{})
	go func() {
		defer close(shutdownDone)
		select {
		case <-ctx.Done():
		case <-stopped:
			return
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			s.log().Warn("agent API shutdown", "err", err)
		}
	}()
	s.log().Info("agent API listening", "addr", ln.Addr().String(), "tls", certFile != "")
	var err error
	if certFile != "" {
		err = srv.ServeTLS(ln, certFile, keyFile)
	} else {
		err = srv.Serve(ln)
	}
	close(stopped)
	<-shutdownDone
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("agent API on %s: %w", ln.Addr(), err)
}

func (s *Server) check(certFile, keyFile string) error {
	switch {
	case s.Agent == nil:
		return errors.New("agent API: no agent")
	case s.Token == "" && !s.Insecure:
		return ErrNoToken
	case (certFile == "") != (keyFile == ""):
		return errors.New("agent API: TLS needs both a certificate and a key file")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		code, data = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(data, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, struct {
		Error string `json:"error"`
	}{msg})
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
