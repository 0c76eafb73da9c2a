package api

import (
	"context"
	"crypto/x509"
	"net/http"
	"slices"
	"strings"

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

// CertAuthenticator maps a client certificate the TLS handshake verified
// to a principal (auth.CertRoles).
type CertAuthenticator interface {
	Authenticate(cert *x509.Certificate) (auth.Principal, error)
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

// authenticate finds who made the request: the bearer token when one is
// sent (it is explicit, so it decides), else the verified client
// certificate when ClientCerts is set, else no one.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (auth.Principal, bool) {
	certs := s.cfg.ClientCerts
	noTokens := s.cfg.Auth == nil || s.cfg.Auth.Empty()
	if noTokens && certs == nil {
		return auth.Anonymous, true
	}
	h := r.Header.Get("Authorization")
	certMsg := ""
	if h == "" && certs != nil {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			certMsg = "; nor was a client certificate this server trusts (tls_client_ca)"
		} else {
			p, err := certs.Authenticate(r.TLS.VerifiedChains[0][0])
			if err == nil {
				return p, true
			}
			certMsg = "; the client certificate was verified, but " + err.Error()
		}
	}
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="stele"`)
		writeError(w, http.StatusUnauthorized, &apiError{Msg: "Authorization: no bearer token was sent" + certMsg + ", and this server requires one: " +
			"send the header `Authorization: Bearer TOKEN` (stele commands: --token or $STELE_TOKEN); an admin creates tokens with `stele token create`"})
		return auth.Principal{}, false
	}
	var p auth.Principal
	if !noTokens {
		p, ok = s.cfg.Auth.Authenticate(strings.TrimSpace(token))
	}
	if noTokens || !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="stele", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, &apiError{Msg: "Authorization: the bearer token sent was refused: it is not one of this server's tokens " +
			"(check it for typos, and that it was created on this server's data directory)"})
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

// reads starts the guarded read of one request: records revealed as the
// request's principal may see them, and every clear read recorded before
// its bytes leave (privacy.ReadGuard holds the rule). Without a privacy
// layer nothing is sealed, and the read reveals and records nothing.
func (s *Server) reads(r *http.Request) *privacy.Read {
	var rg *privacy.ReadGuard
	if s.cfg.Privacy != nil {
		rg = privacy.NewReadGuard(s.cfg.Privacy, s.cfg.Privacy, s.log)
	}
	return rg.Read(principal(r.Context()), r.Pattern)
}

// revealing returns a context whose queries reveal through rd.
func revealing(ctx context.Context, rd *privacy.Read) context.Context {
	return query.WithReadHook(ctx, rd.Reveal)
}

// accessNotRecordedMsg is the answer a client gets instead of the data.
const accessNotRecordedMsg = "the read of personal data could not be recorded in the log, so nothing is shown; retry"

// commitRead makes the access record of rd's clear reads durable before
// the response is sent: a clear read that could not be recorded is not
// served (503).
func (s *Server) commitRead(w http.ResponseWriter, r *http.Request, rd *privacy.Read) bool {
	if err := rd.Commit(r.Context()); err != nil {
		writeError(w, http.StatusServiceUnavailable, &apiError{Msg: accessNotRecordedMsg})
		return false
	}
	return true
}

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

type whoamiResponse struct {
	Name string `json:"name,omitempty"`
	Role string `json:"role"`
	// Open: the server has no tokens and admits everyone as admin.
	Open bool `json:"open"`
}

// whoami answers GET /v1/whoami: who the token is and what its role may
// see, so a client (the web UI) shows what the server will do rather than
// guess it. It reads no record.
func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	if _, aerr := params(r.URL.RawQuery); aerr != nil {
		writeError(w, aerr.status(), aerr)
		return
	}
	p := principal(r.Context())
	writeJSON(w, http.StatusOK, whoamiResponse{Name: p.Name, Role: string(p.Role), Open: s.cfg.Auth == nil || s.cfg.Auth.Empty()})
}
