package auth

import (
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// CertRoles maps the identities of verified client certificates to roles,
// for a server that asks for TLS client certificates (tls_client_ca). An
// identity is written kind:name, one of
//
//	cn:NAME     the subject common name, exactly
//	dns:NAME    a DNS subject alternative name, case-insensitively
//	email:ADDR  an e-mail subject alternative name, the domain
//	            case-insensitively
//	uri:URI     a URI subject alternative name, exactly (spiffe://…)
//
// A certificate whose identities map to two different roles is refused
// rather than given either: the configuration is ambiguous about it.
type CertRoles struct {
	byID map[string]Role
}

// Errors of CertRoles.Authenticate, for errors.Is.
var (
	ErrCertUnmapped  = errors.New("client certificate maps to no role")
	ErrCertAmbiguous = errors.New("client certificate maps to more than one role")
	ErrCertIdentity  = errors.New("bad client certificate identity")
)

// NewCertRoles checks each identity → role pair; errors name the entry.
func NewCertRoles(pairs map[string]string) (*CertRoles, error) {
	c := &CertRoles{byID: make(map[string]Role, len(pairs))}
	for _, id := range slices.Sorted(maps.Keys(pairs)) {
		norm, err := normalizeIdentity(id)
		if err != nil {
			return nil, err
		}
		role := Role(strings.TrimSpace(pairs[id]))
		if !role.Valid() {
			return nil, fmt.Errorf("%s: %w %q (want one of admin, auditor, analyst, service)", id, ErrBadRole, pairs[id])
		}
		if prev, dup := c.byID[norm]; dup && prev != role {
			return nil, fmt.Errorf("%s: %w: given twice, as %s and %s", id, ErrCertIdentity, prev, role)
		}
		c.byID[norm] = role
	}
	if len(c.byID) == 0 {
		return nil, fmt.Errorf("%w: no identity given (want e.g. cn:ingest-1=service)", ErrCertIdentity)
	}
	return c, nil
}

// ParseCertRoles reads the one-line form kind:name=role,kind:name=role
// (flags and environment variables; a name holding ',' or '=' needs the
// YAML mapping form).
func ParseCertRoles(spec string) (*CertRoles, error) {
	pairs := map[string]string{}
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, role, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%q: %w: want kind:name=role, e.g. cn:ingest-1=service", item, ErrCertIdentity)
		}
		id = strings.TrimSpace(id)
		if _, dup := pairs[id]; dup {
			return nil, fmt.Errorf("%s: %w: given twice", id, ErrCertIdentity)
		}
		pairs[id] = role
	}
	return NewCertRoles(pairs)
}

func normalizeIdentity(id string) (string, error) {
	kind, name, ok := strings.Cut(strings.TrimSpace(id), ":")
	if !ok || name == "" {
		return "", fmt.Errorf("%q: %w: want cn:NAME, dns:NAME, email:ADDR or uri:URI", id, ErrCertIdentity)
	}
	switch kind {
	case "cn", "uri":
		return kind + ":" + name, nil
	case "dns":
		return "dns:" + strings.ToLower(name), nil
	case "email":
		return "email:" + lowerDomain(name), nil
	}
	return "", fmt.Errorf("%q: %w: unknown kind %q (want cn, dns, email or uri)", id, ErrCertIdentity, kind)
}

func lowerDomain(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return addr[:at+1] + strings.ToLower(addr[at+1:])
	}
	return addr
}

// Identities lists the identities of cert in the kind:name form.
func Identities(cert *x509.Certificate) []string {
	var ids []string
	if cert.Subject.CommonName != "" {
		ids = append(ids, "cn:"+cert.Subject.CommonName)
	}
	for _, d := range cert.DNSNames {
		ids = append(ids, "dns:"+strings.ToLower(d))
	}
	for _, e := range cert.EmailAddresses {
		ids = append(ids, "email:"+lowerDomain(e))
	}
	for _, u := range cert.URIs {
		ids = append(ids, "uri:"+u.String())
	}
	return ids
}

// Authenticate returns the principal of a client certificate the TLS
// handshake has verified; the caller must not pass an unverified one. Its
// name is "cert " and the identity that matched.
func (c *CertRoles) Authenticate(cert *x509.Certificate) (Principal, error) {
	var p Principal
	for _, id := range Identities(cert) {
		role, ok := c.byID[id]
		switch {
		case !ok:
			continue
		case p.Role == "":
			p = Principal{Name: "cert " + id, Role: role}
		case p.Role != role:
			return Principal{}, fmt.Errorf("%w in tls_client_roles (%s and %s); map one of its names only", ErrCertAmbiguous, p.Role, role)
		}
	}
	if p.Role == "" {
		// Its names stay out of the message: an e-mail name is personal
		// data, and the client knows its own certificate.
		return Principal{}, fmt.Errorf("%w in tls_client_roles (list its names with `openssl x509 -noout -subject -ext subjectAltName`)", ErrCertUnmapped)
	}
	return p, nil
}

// Len is the number of identities mapped.
func (c *CertRoles) Len() int { return len(c.byID) }
