package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// maxNodeBody bounds the bodies of the node endpoints: a reload request is a few URLs.
const maxNodeBody = 64 << 10

// nodeRoutes are the endpoints of an agent on a deployed node.
func (s *Server) nodeRoutes() map[string]map[string]http.HandlerFunc {
	return map[string]map[string]http.HandlerFunc{
		"/v1/reload":  {http.MethodPost: s.handleReload},
		"/v1/update":  {http.MethodPost: s.handleUpdate},
		"/v1/confirm": {http.MethodPost: s.handleConfirm},
		"/v1/boot":    {http.MethodGet: s.handleBoot},
	}
}

// decodeBody reads a small JSON object into v, refusing unknown fields and anything
// after the object. An empty body is accepted only when emptyOK (v keeps its zero value).
func decodeBody(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	return decodeBodyUpTo(w, r, v, emptyOK, maxNodeBody)
}

// decodeBodyUpTo is decodeBody for a body of at most limit bytes; past it the error
// wraps an *http.MaxBytesError.
func decodeBodyUpTo(w http.ResponseWriter, r *http.Request, v any, emptyOK bool, limit int64) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return fmt.Errorf("reading the body: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		if emptyOK {
			return nil
		}
		return errors.New("empty body: want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) {
	var req ReloadRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		writeError(w, http.StatusBadRequest, "bad reload request: "+err.Error())
		return
	}
	if err := req.check(); err != nil {
		writeError(w, http.StatusBadRequest, "bad reload request: "+err.Error())
		return
	}
	if err := s.Agent.StartReload(s.baseContext(r), req, nil); err != nil {
		writeNodeError(w, err)
		return
	}
	s.log().Info("reload accepted", "image", req.Image, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusAccepted, struct {
		State string `json:"state"`
		Image string `json:"image"`
	}{StateReloading, req.Image})
}

func (s *Server) handleConfirm(w http.ResponseWriter, r *http.Request) {
	// Confirm takes no arguments; a body with fields is a client expecting some.
	if err := decodeBody(w, r, &struct{}{}, true); err != nil {
		writeError(w, http.StatusBadRequest, "bad confirm request: "+err.Error())
		return
	}
	ans, err := s.Agent.Confirm(r.Context())
	if err != nil {
		writeNodeError(w, err)
		return
	}
	s.log().Info("confirm done", "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, ans)
}

func (s *Server) handleBoot(w http.ResponseWriter, r *http.Request) {
	ans, err := s.Agent.Boot(r.Context())
	if err != nil {
		writeNodeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// nodeError is a node endpoint's error answer: exit_code is what the same command
// would exit with, so a conductor branches on it as a script does on the CLI's.
type nodeError struct {
	Error    string `json:"error"`
	ExitCode int    `json:"exit_code,omitempty"`
}

// writeNodeError answers a node operation's error: 409 when something else holds the
// node (an operation of this agent, a pending power action, another run's lock on the
// boot files), 501 when the agent cannot do it, else 500.
func writeNodeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrBusy), errors.Is(err, ErrPowerPending):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, disk.ErrLocked):
		writeJSON(w, http.StatusConflict, nodeError{err.Error(), engine.ExitCode(err)})
	case errors.Is(err, errors.ErrUnsupported):
		writeError(w, http.StatusNotImplemented, err.Error())
	default:
		writeJSON(w, http.StatusInternalServerError, nodeError{err.Error(), engine.ExitCode(err)})
	}
}

// handleUpdate serves POST /v1/update: the spec is checked first (400 with its problems),
// then the options; a dry run answers the break-down, else the update starts (202).
func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request) {
	var req UpdateRequest
	limit := s.maxBody()
	if err := decodeBodyUpTo(w, r, &req, false, limit); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("update request larger than %d bytes", limit))
			return
		}
		writeError(w, http.StatusBadRequest, "bad update request: "+err.Error())
		return
	}
	spec, warns, ok := loadRequestSpec(w, req.Spec)
	if !ok {
		return
	}
	if err := req.UpdateOptions.check(); err != nil {
		writeError(w, http.StatusBadRequest, "bad update request: "+err.Error())
		return
	}
	if req.DryRun {
		s.dryRunUpdate(w, r, spec, req.UpdateOptions)
		return
	}
	if err := s.Agent.StartUpdate(s.baseContext(r), spec, req.UpdateOptions, nil); err != nil {
		writeNodeError(w, err)
		return
	}
	s.log().Info("update accepted", "force", req.Force, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusAccepted, struct {
		State    string           `json:"state"`
		Warnings []schema.Problem `json:"warnings,omitempty"`
	}{StateUpdating, prefixProblems(warns)})
}

// specPointer is where an update request carries its spec: the spec's problems are
// answered with JSON pointers into the request body, under it.
const specPointer = "/spec"

// loadRequestSpec loads the spec of an update request as POST /v1/deploy loads its body,
// answering 400 (the problems' pointers under /spec) when it is missing or invalid.
func loadRequestSpec(w http.ResponseWriter, raw json.RawMessage) (*schema.Spec, []schema.Problem, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		writeError(w, http.StatusBadRequest, `bad update request: "spec" is required: the provision.json document itself`)
		return nil, nil, false
	}
	spec, warns, err := schema.Load(bytes.NewReader(raw))
	if err != nil {
		var ve *schema.ValidationError
		if errors.As(err, &ve) {
			writeJSON(w, http.StatusBadRequest, specError{Error: "invalid spec", Problems: nonNil(prefixProblems(ve.Problems))})
		} else {
			writeError(w, http.StatusBadRequest, `bad update request: "spec": `+err.Error())
		}
		return nil, nil, false
	}
	return spec, warns, true
}

// prefixProblems returns ps with their pointers into the request body (under /spec).
func prefixProblems(ps []schema.Problem) []schema.Problem {
	out := make([]schema.Problem, len(ps))
	for i, p := range ps {
		p.Pointer = specPointer + p.Pointer
		out[i] = p
	}
	return out
}

// dryRunUpdate answers the break-down of an update, as plan --against --json prints it:
// 200 also for a refused spec, whose break-down lists the refusals.
func (s *Server) dryRunUpdate(w http.ResponseWriter, r *http.Request, spec *schema.Spec, o UpdateOptions) {
	b, err := s.Agent.PlanUpdate(r.Context(), spec, o)
	if err != nil && (b == nil || !errors.Is(err, partition.ErrRefused)) {
		writeNodeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}
