package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
)

// serverTLS returns the API's TLS configuration, nil when tls_cert is not
// set. It loads every file now, so a wrong path or a key that does not
// match fails the start rather than the first handshake.
func serverTLS(cfg Config) (*tls.Config, error) {
	switch {
	case cfg.TLSCert == "" && cfg.TLSKey == "":
		if cfg.TLSClientCA != "" || cfg.TLSClientRoles != nil {
			return nil, errors.New("tls_client_ca and tls_client_roles need tls_cert and tls_key: client certificates are asked for in a TLS handshake")
		}
		return nil, nil
	case cfg.TLSCert == "":
		return nil, errors.New("tls_key is set but tls_cert is not: give both (the certificate and its private key, PEM files)")
	case cfg.TLSKey == "":
		return nil, errors.New("tls_cert is set but tls_key is not: give both (the certificate and its private key, PEM files)")
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		// The error names neither key bytes nor their content.
		return nil, fmt.Errorf("tls_cert %s and tls_key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
	}
	tc := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}
	switch {
	case cfg.TLSClientCA == "" && cfg.TLSClientRoles == nil:
	case cfg.TLSClientCA == "":
		return nil, errors.New("tls_client_roles is set but tls_client_ca is not: the server must know which CA's client certificates to trust")
	case cfg.TLSClientRoles == nil:
		return nil, errors.New("tls_client_ca is set but tls_client_roles is not: a verified client certificate would map to no role; map its identities, e.g. tls_client_roles: cn:ingest-1=service")
	default:
		pem, err := os.ReadFile(cfg.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("tls_client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls_client_ca %s: no PEM certificate in it", cfg.TLSClientCA)
		}
		tc.ClientCAs = pool
		// Optional: a client without a certificate falls back to tokens.
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

// requireTLSOffLoopback refuses plain HTTP on an address other hosts can
// reach, unless insecure_listen says a proxy on this host terminates TLS.
func requireTLSOffLoopback(cfg Config, tlsOn bool, logger *slog.Logger) error {
	loopback, err := isLoopback(cfg.Addr)
	if err != nil {
		return err
	}
	switch {
	case tlsOn || loopback:
		return nil
	case cfg.InsecureListen:
		logger.Warn("plain HTTP beyond loopback (insecure_listen): bearer tokens and personal data cross the network in clear", "addr", cfg.Addr)
		return nil
	}
	return fmt.Errorf("addr %s is not loopback and TLS is off: bearer tokens and the personal data revealed to auditors would cross the network in clear, "+
		"readable and replayable by anyone on the path; set tls_cert and tls_key (--tls-cert, --tls-key), "+
		"or pass --insecure-listen only if a TLS-terminating proxy on this host is the sole client", cfg.Addr)
}

// isLoopback reports whether addr (host:port) listens on loopback only.
func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("addr %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback()), nil
}
