package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stele/stele/auth"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate and its key, PEM-encoded.
func (ca *testCA) issue(t *testing.T, tmpl *x509.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func (ca *testCA) client(t *testing.T, tmpl *x509.Certificate) tls.Certificate {
	t.Helper()
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	c, k := ca.issue(t, tmpl)
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsServer starts serve with TLS and client certificates from ca, and
// returns its https base URL.
func tlsServer(ctx context.Context, t *testing.T, cfg Config, rootCAs *x509.CertPool) string {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "addr")
	srvCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serve(srvCtx, cfg, addrFile, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: rootCAs}}}
	for {
		select {
		case err := <-served:
			t.Fatalf("serve stopped: %v", err)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		b, err := os.ReadFile(addrFile)
		if err != nil {
			continue
		}
		base := "https://" + strings.TrimSpace(string(b))
		resp, err := client.Get(base + "/healthz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return base
		}
	}
}

func TestServeTLSWithClientCertificateRoles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	ca := newTestCA(t, "stele test CA")
	srvCert, srvKey := ca.issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "stele.test"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)

	cfg := defaultConfig()
	cfg.Data, cfg.Addr = filepath.Join(dir, "data"), "127.0.0.1:0"
	cfg.Stream.Listen = "none"
	cfg.TLSCert = writeFile(t, dir, "server.crt", srvCert)
	cfg.TLSKey = writeFile(t, dir, "server.key", srvKey)
	cfg.TLSClientCA = writeFile(t, dir, "clients-ca.crt", ca.pem)
	roles, err := auth.ParseCertRoles("cn:admin-1=admin, cn:auditor-1=auditor, dns:analyst.example.com=analyst")
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLSClientRoles = roles
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.Open(cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	serviceToken, err := tokens.Create("ingest", auth.RoleService)
	if err != nil {
		t.Fatal(err)
	}
	base := tlsServer(ctx, t, cfg, roots)

	type caller struct {
		cert  *tls.Certificate
		token string
	}
	do := func(c caller, method, path, body string) (int, string, error) {
		tc := &tls.Config{RootCAs: roots}
		if c.cert != nil {
			// Sent whatever CAs the server names: Go's client would
			// otherwise keep a certificate of another CA to itself.
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c.cert, nil }
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
		defer client.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	must := func(c caller, method, path, body string, want int) string {
		t.Helper()
		code, b, err := do(c, method, path, body)
		if err != nil || code != want {
			t.Fatalf("%s %s: %d %s (%v), want %d", method, path, code, b, err, want)
		}
		return b
	}
	admin := ca.client(t, &x509.Certificate{Subject: pkix.Name{CommonName: "admin-1"}})
	auditor := ca.client(t, &x509.Certificate{Subject: pkix.Name{CommonName: "auditor-1"}})
	analyst := ca.client(t, &x509.Certificate{Subject: pkix.Name{CommonName: "someone"}, DNSNames: []string{"Analyst.Example.com"}})
	stranger := ca.client(t, &x509.Certificate{Subject: pkix.Name{CommonName: "stranger"}})
	foreign := newTestCA(t, "another CA").client(t, &x509.Certificate{Subject: pkix.Name{CommonName: "auditor-1"}})

	must(caller{cert: &admin}, "PUT", "/v1/schemas/crm.public.customers",
		`{"type":"object","properties":{"id":{"type":"integer","x-subject":true},"email":{"type":"string","x-pii":true}},"required":["id"]}`, http.StatusCreated)
	must(caller{token: serviceToken}, "POST", "/v1/records",
		`{"source":{"name":"crm","schema":"public","table":"customers"},"op":"insert","key":{"id":7},"after":{"id":7,"email":"a@x.org"}}`, http.StatusCreated)

	// Each certificate gets its role's view of the personal data.
	const path = "/v1/entities/crm/customers/7/history"
	if b := must(caller{cert: &auditor}, "GET", path, "", http.StatusOK); !strings.Contains(b, `"email":"a@x.org"`) {
		t.Errorf("auditor certificate: email not in clear:\n%s", b)
	}
	if b := must(caller{cert: &analyst}, "GET", path, "", http.StatusOK); strings.Contains(b, "a@x.org") || !strings.Contains(b, `"email"`) {
		t.Errorf("analyst certificate (DNS name, other case): email not masked:\n%s", b)
	}
	// Without a certificate, the bearer token decides: service sees it
	// sealed.
	if b := must(caller{token: serviceToken}, "GET", path, "", http.StatusOK); strings.Contains(b, "a@x.org") {
		t.Errorf("service token: email in clear:\n%s", b)
	}
	// A token sent with a certificate decides, as it is explicit.
	if b := must(caller{cert: &auditor, token: serviceToken}, "GET", path, "", http.StatusOK); strings.Contains(b, "a@x.org") {
		t.Errorf("service token with an auditor certificate: email in clear:\n%s", b)
	}
	// The service role may not erase, whatever certificate comes with it.
	must(caller{cert: &admin, token: serviceToken}, "POST", "/v1/subjects/7/erase", `{}`, http.StatusForbidden)

	if b := must(caller{}, "GET", path, "", http.StatusUnauthorized); !strings.Contains(b, "no bearer token was sent; nor was a client certificate") {
		t.Errorf("neither token nor certificate: %s", b)
	}
	if b := must(caller{cert: &stranger}, "GET", path, "", http.StatusUnauthorized); !strings.Contains(b, "maps to no role in tls_client_roles") {
		t.Errorf("unmapped certificate: %s", b)
	}
	// A certificate from another CA fails the handshake.
	if code, b, err := do(caller{cert: &foreign}, "GET", path, ""); err == nil {
		t.Errorf("certificate of another CA: answered %d %s", code, b)
	}
	// Plain HTTP to the TLS port is not served.
	resp, err := http.Get("http" + strings.TrimPrefix(base, "https") + path)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(b), "a@x.org") {
			t.Errorf("plain HTTP to the TLS port: %d %s", resp.StatusCode, b)
		}
	}
}

func TestServeRefusesPlainHTTPBeyondLoopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := defaultConfig()
	cfg.Data, cfg.Addr = t.TempDir(), "0.0.0.0:0"
	cfg.Stream.Listen = "none"
	tokens, err := auth.Open(cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Create("ops", auth.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	err = serve(ctx, cfg, "", slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "addr 0.0.0.0:0 is not loopback and TLS is off") ||
		!strings.Contains(err.Error(), "cross the network in clear") || !strings.Contains(err.Error(), "--insecure-listen") {
		t.Fatalf("plain HTTP on 0.0.0.0: %v", err)
	}

	// With the flag it serves (and says why it is unsafe in the log).
	cfg.InsecureListen = true
	addrFile := filepath.Join(t.TempDir(), "addr")
	srvCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serve(srvCtx, cfg, addrFile, slog.New(slog.DiscardHandler)) }()
	var addr string
	for addr == "" {
		select {
		case err := <-served:
			t.Fatalf("serve with insecure_listen: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if b, err := os.ReadFile(addrFile); err == nil {
			addr = strings.TrimSpace(string(b))
		}
	}
	stop()
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("serve with insecure_listen: %v", err)
	}
}

func TestTLSConfigRefusesHalfSettings(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	c, k := ca.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "s"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	crt, key := writeFile(t, dir, "s.crt", c), writeFile(t, dir, "s.key", k)
	otherKey := writeFile(t, dir, "o.key", func() []byte { _, k := ca.issue(t, &x509.Certificate{}); return k }())
	roles, err := auth.ParseCertRoles("cn:a=admin")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"key without cert", Config{TLSKey: key}, "tls_key is set but tls_cert is not"},
		{"cert without key", Config{TLSCert: crt}, "tls_cert is set but tls_key is not"},
		{"mismatched key", Config{TLSCert: crt, TLSKey: otherKey}, "tls_cert " + crt + " and tls_key " + otherKey},
		{"missing file", Config{TLSCert: filepath.Join(dir, "nope.crt"), TLSKey: key}, "nope.crt"},
		{"client CA without TLS", Config{TLSClientCA: crt}, "need tls_cert and tls_key"},
		{"roles without CA", Config{TLSCert: crt, TLSKey: key, TLSClientRoles: roles}, "tls_client_roles is set but tls_client_ca is not"},
		{"CA without roles", Config{TLSCert: crt, TLSKey: key, TLSClientCA: crt}, "tls_client_ca is set but tls_client_roles is not"},
		{"CA file without PEM", Config{TLSCert: crt, TLSKey: key, TLSClientCA: otherKey, TLSClientRoles: roles}, "no PEM certificate"},
	} {
		if _, err := serverTLS(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
	if tc, err := serverTLS(Config{TLSCert: crt, TLSKey: key}); err != nil || tc == nil || tc.ClientAuth != tls.NoClientCert {
		t.Errorf("cert and key: %v, %+v", err, tc)
	}
}

func TestTLSConfigOptions(t *testing.T) {
	cfg, err := loadTest(t, "tls_cert: /etc/stele/s.crt\ntls_key: /etc/stele/s.key\ntls_client_ca: /etc/stele/ca.crt\n"+
		"tls_client_roles:\n  cn:ingest-1: service\n  \"cn:Ops, Inc\": admin\n", nil, "--insecure-listen")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLSCert != "/etc/stele/s.crt" || cfg.TLSKey != "/etc/stele/s.key" || cfg.TLSClientCA != "/etc/stele/ca.crt" || !cfg.InsecureListen {
		t.Fatalf("loaded %+v", cfg)
	}
	// The YAML mapping allows a ',' in a name.
	if cfg.TLSClientRoles == nil || cfg.TLSClientRoles.Len() != 2 {
		t.Fatalf("roles %+v", cfg.TLSClientRoles)
	}
	cfg, err = loadTest(t, "", map[string]string{"STELE_TLS_CLIENT_ROLES": "dns:a.example.com=auditor,uri:spiffe://x/y=service", "STELE_INSECURE_LISTEN": "false"}, "--insecure-listen=false")
	if err != nil || cfg.TLSClientRoles.Len() != 2 || cfg.InsecureListen {
		t.Fatalf("env: %+v %v", cfg, err)
	}
	for _, c := range []struct {
		yaml string
		env  map[string]string
		want []string
	}{
		{"tls_client_roles:\n  cn:a: boss\n", nil, []string{"stele.yaml", "tls_client_roles", `cn:a: unknown role "boss"`}},
		{"tls_client_roles:\n  ip:1.2.3.4: admin\n", nil, []string{"tls_client_roles", `unknown kind "ip"`}},
		{"", map[string]string{"STELE_TLS_CLIENT_ROLES": "cn:a"}, []string{"STELE_TLS_CLIENT_ROLES", "want kind:name=role"}},
		{"", map[string]string{"STELE_TLS_CLIENT_ROLES": "cn:a=admin,cn:a=service"}, []string{"cn:a", "given twice"}},
		{"insecure_listen: maybe\n", nil, []string{"insecure_listen", "true or false"}},
	} {
		if _, err := loadTest(t, c.yaml, c.env); err == nil {
			t.Errorf("%q %v: no error", c.yaml, c.env)
		} else {
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q %v: error %q does not say %q", c.yaml, c.env, err, w)
				}
			}
		}
	}
}

// servedCN is the common name of the certificate base serves.
func servedCN(ctx context.Context, t *testing.T, base string, roots *x509.CertPool) string {
	t.Helper()
	d := tls.Dialer{Config: &tls.Config{RootCAs: roots}}
	conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(base, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].Subject.CommonName
}

// A renewed certificate is served after SIGHUP, without a restart; files
// that do not load leave the one in force.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	server := func(cn string) ([]byte, []byte) {
		return ca.issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: cn}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	}
	c, k := server("first")
	cfg := defaultConfig()
	cfg.Data, cfg.Addr = filepath.Join(dir, "data"), "127.0.0.1:0"
	cfg.Stream.Listen = "none"
	cfg.TLSCert, cfg.TLSKey = writeFile(t, dir, "s.crt", c), writeFile(t, dir, "s.key", k)
	base := tlsServer(ctx, t, cfg, roots)
	if cn := servedCN(ctx, t, base, roots); cn != "first" {
		t.Fatalf("serves %q", cn)
	}
	c, k = server("second")
	writeFile(t, dir, "s.crt", c)
	writeFile(t, dir, "s.key", k)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for servedCN(ctx, t, base, roots) != "second" {
		select {
		case <-ctx.Done():
			t.Fatal("the renewed certificate is not served after SIGHUP")
		case <-time.After(20 * time.Millisecond):
		}
	}

	r, err := newTLSReloader(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "s.key", []byte("not a key"))
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "the ones in force stay") {
		t.Fatalf("reload of a bad key: %v", err)
	}
	if got := r.cur.Load().Certificates[0].Leaf.Subject.CommonName; got != "second" {
		t.Fatalf("after a failed reload the config in force serves %q", got)
	}
}
