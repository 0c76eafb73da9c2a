package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
	"github.com/stele/stele/sysrecord"
)

// Authenticator is what the API needs from the token store.
type Authenticator interface {
	Authenticate(token string) (auth.Principal, bool)
	// Empty reports that no token exists: every request is then trusted
	// (the server listens on loopback only).
	Empty() bool
}

// Privacy is what the API needs from the privacy layer.
type Privacy interface {
	Reveal(ctx context.Context, role auth.Role, r *record.Record) (clear int, err error)
	BlindToken(field, value string) []byte
	Erase(ctx context.Context, req privacy.EraseRequest) (*privacy.ReceiptResult, error)
	RecordAccess(ctx context.Context, by auth.Principal, endpoint string, seqs []uint64, fields int) error
}

type principalKey struct{}

// principal is who made the request; requests reach handlers only through
// authorize, which sets it.
func principal(ctx context.Context) auth.Principal {
	if p, ok := ctx.Value(principalKey{}).(auth.Principal); ok {
		return p
	}
	return auth.Principal{Role: auth.RoleService}
}

// Role sets for endpoints.
var (
	anyRole    = auth.Roles
	writeRoles = []auth.Role{auth.RoleAdmin, auth.RoleService}
	adminRole  = []auth.Role{auth.RoleAdmin}
)

// authorize admits requests whose bearer token carries one of roles.
func (s *Server) authorize(roles []auth.Role, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if !slices.Contains(roles, p.Role) {
			writeError(w, http.StatusForbidden, &apiError{Msg: "role " + string(p.Role) + " may not do this (allowed: " + joinRoles(roles) + ")"})
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}

func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (auth.Principal, bool) {
	if s.cfg.Auth == nil || s.cfg.Auth.Empty() {
		return auth.Anonymous, true
	}
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="stele"`)
		writeError(w, http.StatusUnauthorized, &apiError{Msg: "Authorization: a bearer token is required (create one with `stele token create`)"})
		return auth.Principal{}, false
	}
	p, ok := s.cfg.Auth.Authenticate(strings.TrimSpace(token))
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="stele", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, &apiError{Msg: "Authorization: the bearer token is not valid"})
		return auth.Principal{}, false
	}
	return p, true
}

func joinRoles(roles []auth.Role) string {
	out := make([]string, len(roles))
	for i, r := range roles {
		out[i] = string(r)
	}
	return strings.Join(out, ", ")
}

// readAccess collects, over one request, the records shown with personal
// data in clear, so the request can be recorded as an access.
type readAccess struct {
	mu     sync.Mutex
	seqs   []uint64
	fields int
}

// take empties acc and returns what it held, each seq once and in
// ascending order (one request may show a record twice, as GraphQL fields
// or folded states do).
func (acc *readAccess) take() (seqs []uint64, fields int) {
	acc.mu.Lock()
	seqs, fields = acc.seqs, acc.fields
	acc.seqs, acc.fields = nil, 0
	acc.mu.Unlock()
	slices.Sort(seqs)
	return slices.Compact(seqs), fields
}

func (acc *readAccess) empty() bool {
	acc.mu.Lock()
	defer acc.mu.Unlock()
	return len(acc.seqs) == 0
}

// revealer returns the read hook that reveals personal data as the
// request's principal may see it (nil without a privacy layer), and the
// access it accumulates.
func (s *Server) revealer(ctx context.Context) (query.ReadHook, *readAccess) {
	acc := &readAccess{}
	if s.cfg.Privacy == nil {
		return nil, acc
	}
	p := principal(ctx)
	return func(ctx context.Context, r *record.Record) error {
		n, err := s.cfg.Privacy.Reveal(ctx, p.Role, r)
		if n > 0 {
			acc.mu.Lock()
			acc.seqs = append(acc.seqs, r.Seq)
			acc.fields += n
			acc.mu.Unlock()
		}
		return err
	}, acc
}

// revealing returns a context whose queries reveal personal data as the
// request's principal may see it, and the access it accumulates.
func (s *Server) revealing(ctx context.Context) (context.Context, *readAccess) {
	hook, acc := s.revealer(ctx)
	if hook == nil {
		return ctx, acc
	}
	return query.WithReadHook(ctx, hook), acc
}

// errAccessNotRecorded: a read of personal data in clear could not be
// recorded, so its answer must not be sent.
var errAccessNotRecorded = errors.New("the read of personal data could not be recorded in the log")

// accessNotRecordedMsg is the answer a client gets instead of the data.
const accessNotRecordedMsg = "the read of personal data could not be recorded in the log, so nothing is shown; retry"

// logAccess appends one access record naming what acc holds, and empties
// it; with nothing held it appends nothing.
func (s *Server) logAccess(r *http.Request, acc *readAccess) error {
	if s.cfg.Privacy == nil {
		return nil
	}
	seqs, fields := acc.take()
	if len(seqs) == 0 {
		return nil
	}
	if err := s.cfg.Privacy.RecordAccess(r.Context(), principal(r.Context()), r.Pattern, seqs, fields); err != nil {
		s.log.ErrorContext(r.Context(), "could not record a read of personal data; withholding the response", "route", r.Pattern, "err", err)
		return fmt.Errorf("%w: %w", errAccessNotRecorded, err)
	}
	return nil
}

// recordAccess appends the access record before the response is sent: a
// clear read that could not be recorded is not served.
func (s *Server) recordAccess(w http.ResponseWriter, r *http.Request, acc *readAccess) bool {
	if err := s.logAccess(r, acc); err != nil {
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: accessNotRecordedMsg})
		return false
	}
	return true
}

// Sizes at which an accessGate passes held bytes on.
const (
	gateFlush = 64 << 10 // when no clear read awaits recording
	gateChunk = 1 << 20  // in any case, after recording the access
)

// accessGate holds back a streamed response that may show personal data
// in clear, so that no such byte leaves before its access is recorded: it
// passes bytes on in chunks, each preceded by one access record naming the
// records revealed since the previous record. A record is revealed before
// its bytes are written here, so the record it lands in always precedes
// them. Chunks keep memory bounded and the access records few (one per
// MiB at most).
type accessGate struct {
	s   *Server
	r   *http.Request
	acc *readAccess
	w   io.Writer
	buf []byte
}

func (g *accessGate) Write(p []byte) (int, error) {
	g.buf = append(g.buf, p...)
	if len(g.buf) >= gateChunk || (len(g.buf) >= gateFlush && g.acc.empty()) {
		if err := g.Flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush records the access of what was revealed so far, then passes every
// held byte on; if recording fails nothing is passed on.
func (g *accessGate) Flush() error {
	if err := g.s.logAccess(g.r, g.acc); err != nil {
		return err
	}
	if len(g.buf) == 0 {
		return nil
	}
	_, err := g.w.Write(g.buf)
	g.buf = g.buf[:0]
	return err
}

// discard drops the held bytes, unsent.
func (g *accessGate) discard() { g.buf = nil }

// recordAdmin appends an admin action to the log; on failure it answers
// 503 and returns false.
func (s *Server) recordAdmin(w http.ResponseWriter, r *http.Request, action string, detail map[string]any) bool {
	rec, err := sysrecord.Admin(principal(r.Context()), action, detail, s.cfg.Now())
	if err == nil {
		_, err = s.cfg.Log.Append(r.Context(), []*record.Record{rec})
	}
	if err != nil {
		s.log.ErrorContext(r.Context(), "could not record an admin action", "action", action, "err", err)
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: action + " took effect, but recording it in the log failed; retry (it is idempotent)"})
		return false
	}
	return true
}
