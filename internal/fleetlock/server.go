package fleetlock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// GroupsPath lists the groups, their slots and their holders (GET, JSON GroupsResponse).
const GroupsPath = "/v1/groups"

// GroupsResponse is the body of GET /v1/groups.
type GroupsResponse struct {
	Groups []GroupStatus `json:"groups"`
}

// ServerOptions configure a Server.
type ServerOptions struct {
	// Logger receives one JSON line per request outcome (discarded when nil).
	Logger *slog.Logger
	// Metrics serves /metrics from Handler.
	Metrics bool
	// Timeout bounds each request's store work, retries included (default 3 s).
	Timeout time.Duration
	// SyncEvery is how often Run syncs the configured groups (default 1 minute).
	SyncEvery time.Duration
}

// Server answers FleetLock requests from a Store. It keeps no state besides counters, so
// any number of servers can run on one shared store (one etcd).
type Server struct {
	store   Store
	opt     ServerOptions
	metrics *metrics
}

// NewServer returns a Server on store.
func NewServer(store Store, opt ServerOptions) *Server {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 3 * time.Second
	}
	if opt.SyncEvery <= 0 {
		opt.SyncEvery = time.Minute
	}
	return &Server{store: store, opt: opt, metrics: newMetrics()}
}

// Run syncs the configured groups (creation, slot counts, holder TTL) now and every
// SyncEvery until ctx ends; a failed sync is logged and tried again at the next tick.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.opt.SyncEvery)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
		if err := s.store.Sync(sctx); err != nil && ctx.Err() == nil {
			s.opt.Logger.Warn("syncing groups", "error", err.Error())
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Handler serves the protocol's endpoints, /v1/groups, /healthz, and /metrics when
// enabled. Paths match with or without a trailing slash and with repeated slashes, so
// that a base URL ending in "/" works.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := cleanPath(r.URL.Path); p {
		case PreRebootPath, SteadyStatePath:
			if r.Method != http.MethodPost {
				s.methodNotAllowed(w, r, http.MethodPost)
				return
			}
			s.fleetlock(w, r, strings.TrimPrefix(p, "/v1/"))
		case GroupsPath:
			if !isGet(w, r, s) {
				return
			}
			s.groups(w, r)
		default:
			if p == "/metrics" && !s.opt.Metrics {
				p = ""
			}
			s.statusRoute(w, r, p)
		}
	})
}

// StatusHandler serves /metrics and /healthz only (the reference server's status listener).
func (s *Server) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.statusRoute(w, r, cleanPath(r.URL.Path))
	})
}

func (s *Server) statusRoute(w http.ResponseWriter, r *http.Request, p string) {
	switch p {
	case "/metrics":
		if !isGet(w, r, s) {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.opt.Timeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.metrics.write(ctx, w, s.store)
	case "/healthz":
		if !isGet(w, r, s) {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.opt.Timeout)
		defer cancel()
		if err := s.store.Healthy(ctx); err != nil {
			s.opt.Logger.Warn("health check failed", "error", err.Error())
			http.Error(w, "etcd unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	default:
		writeProtocolError(w, &Error{Kind: KindGeneric, Value: fmt.Sprintf("no such endpoint %q", r.URL.Path), Status: http.StatusNotFound})
	}
}

// cleanPath collapses repeated slashes and drops a trailing one.
func cleanPath(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return p
}

func isGet(w http.ResponseWriter, r *http.Request, s *Server) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	s.methodNotAllowed(w, r, http.MethodGet)
	return false
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeProtocolError(w, &Error{Kind: KindGeneric, Status: http.StatusMethodNotAllowed,
		Value: fmt.Sprintf("method %s not allowed on %s: use %s", r.Method, r.URL.Path, allow)})
}

// writeProtocolError sends e as the protocol's JSON error body with its status.
func writeProtocolError(w http.ResponseWriter, e *Error) {
	b, _ := json.Marshal(e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	w.Write(append(b, '\n'))
}

// fleetlock serves pre-reboot and steady-state.
func (s *Server) fleetlock(w http.ResponseWriter, r *http.Request, endpoint string) {
	params, herr := s.identify(r)
	if herr == nil {
		ctx, cancel := context.WithTimeout(r.Context(), s.opt.Timeout)
		var err error
		if endpoint == "pre-reboot" {
			_, err = s.store.Lock(ctx, params.Group, params.ID)
		} else {
			_, err = s.store.Unlock(ctx, params.Group, params.ID)
		}
		cancel()
		herr = storeError(err)
	}
	log := s.opt.Logger.With("endpoint", endpoint, "id", params.ID, "group", params.Group, "remote", r.RemoteAddr)
	if herr != nil {
		s.metrics.count(endpoint, herr.Kind)
		log.Warn("request refused", "status", herr.Status, "kind", herr.Kind, "error", herr.Value)
		writeProtocolError(w, herr)
		return
	}
	s.metrics.count(endpoint, "ok")
	log.Info("request done")
	w.WriteHeader(http.StatusOK)
}

// identify checks the header and the body, and that the group is configured.
func (s *Server) identify(r *http.Request) (ClientParams, *Error) {
	bad := func(format string, a ...any) *Error {
		return &Error{Kind: KindInvalidClientIdentity, Status: http.StatusBadRequest, Value: fmt.Sprintf(format, a...)}
	}
	if v := r.Header.Get(HeaderName); v != "true" {
		return ClientParams{}, bad("header %s must be \"true\", got %q", HeaderName, v)
	}
	var req Request
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		return ClientParams{}, bad("body is not a JSON {\"client_params\": {\"id\": ..., \"group\": ...}}: %v", err)
	}
	p := req.ClientParams
	switch {
	case p.ID == "":
		return p, bad("empty client id (client_params.id)")
	case p.Group == "":
		return p, bad("empty client group (client_params.group)")
	case !ValidGroup(p.Group):
		return p, bad("client group %q must match %s", p.Group, groupPattern)
	}
	if _, ok := s.store.Configured(p.Group); !ok {
		return p, &Error{Kind: KindUnknownGroup, Status: http.StatusBadRequest, Value: fmt.Sprintf("unknown group %q", p.Group)}
	}
	return p, nil
}

// storeError maps a store error to the protocol's kinds, as the reference server does:
// a full group or a failed write is failed_lock, an unreadable semaphore failed_sem_init.
func storeError(err error) *Error {
	var full *FullError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &full):
		// The reference server's words, without the request's context.
		return &Error{Kind: KindFailedLock, Status: http.StatusInternalServerError, Value: full.Error()}
	case errors.Is(err, ErrSemaphoreRead):
		return &Error{Kind: KindFailedSemInit, Status: http.StatusInternalServerError, Value: err.Error()}
	default:
		return &Error{Kind: KindFailedLock, Status: http.StatusInternalServerError, Value: err.Error()}
	}
}

// groups serves GET /v1/groups.
func (s *Server) groups(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.opt.Timeout)
	defer cancel()
	gs, err := s.store.Status(ctx)
	if err != nil {
		writeProtocolError(w, &Error{Kind: KindGeneric, Status: http.StatusServiceUnavailable, Value: err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(GroupsResponse{Groups: gs})
}
