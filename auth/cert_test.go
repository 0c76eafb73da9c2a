package auth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"testing"
)

func TestCertRoles(t *testing.T) {
	c, err := ParseCertRoles("cn:ingest-1=service, dns:Audit.Example.com=auditor, email:Ops@Example.COM=admin, uri:spiffe://prod/reader=analyst")
	if err != nil {
		t.Fatal(err)
	}
	spiffe, _ := url.Parse("spiffe://prod/reader")
	for _, tc := range []struct {
		name string
		cert x509.Certificate
		want Role
		err  error
	}{
		{"common name", x509.Certificate{Subject: pkix.Name{CommonName: "ingest-1"}}, RoleService, nil},
		{"common name is exact", x509.Certificate{Subject: pkix.Name{CommonName: "Ingest-1"}}, "", ErrCertUnmapped},
		{"DNS name, any case", x509.Certificate{DNSNames: []string{"audit.EXAMPLE.com"}}, RoleAuditor, nil},
		{"e-mail, domain in any case", x509.Certificate{EmailAddresses: []string{"Ops@example.com"}}, RoleAdmin, nil},
		{"e-mail local part is exact", x509.Certificate{EmailAddresses: []string{"ops@example.com"}}, "", ErrCertUnmapped},
		{"URI", x509.Certificate{URIs: []*url.URL{spiffe}}, RoleAnalyst, nil},
		{"several names, one role", x509.Certificate{Subject: pkix.Name{CommonName: "nobody"}, DNSNames: []string{"x.example.com", "audit.example.com"}}, RoleAuditor, nil},
		{"two roles", x509.Certificate{Subject: pkix.Name{CommonName: "ingest-1"}, DNSNames: []string{"audit.example.com"}}, "", ErrCertAmbiguous},
		{"no names", x509.Certificate{}, "", ErrCertUnmapped},
	} {
		p, err := c.Authenticate(&tc.cert)
		if !errors.Is(err, tc.err) || p.Role != tc.want {
			t.Errorf("%s: %+v, %v; want role %q, error %v", tc.name, p, err, tc.want, tc.err)
		}
	}
	for _, bad := range []string{"", "cn:a", "cn:=admin", "cn:a=root", "x509:a=admin", "cn:a=admin,cn:a=admin"} {
		if _, err := ParseCertRoles(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
