package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/query"
	"github.com/stele/stele/record"
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

// revealing returns a context whose queries reveal personal data as the
// request's principal may see it, and the access it accumulates.
func (s *Server) revealing(ctx context.Context) (context.Context, *readAccess) {
	acc := &readAccess{}
	if s.cfg.Privacy == nil {
		return ctx, acc
	}
	p := principal(ctx)
	return query.WithReadHook(ctx, func(ctx context.Context, r *record.Record) error {
		n, err := s.cfg.Privacy.Reveal(ctx, p.Role, r)
		if n > 0 {
			acc.mu.Lock()
			acc.seqs = append(acc.seqs, r.Seq)
			acc.fields += n
			acc.mu.Unlock()
		}
		return err
	}), acc
}

// recordAccess appends the access record before the response is sent: a
// clear read that could not be recorded is not served.
func (s *Server) recordAccess(w http.ResponseWriter, r *http.Request, acc *readAccess) bool {
	if s.cfg.Privacy == nil || len(acc.seqs) == 0 {
		return true
	}
	route := r.Pattern
	if err := s.cfg.Privacy.RecordAccess(r.Context(), principal(r.Context()), route, acc.seqs, acc.fields); err != nil {
		s.log.ErrorContext(r.Context(), "could not record a read of personal data; withholding the response", "err", err)
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: "the read of personal data could not be recorded in the log; retry"})
		return false
	}
	return true
}
