package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
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
		// Set here because the config is handed out per connection
		// (tlsReloader), where http.Server.ServeTLS cannot add h2.
		NextProtos: []string{"h2", "http/1.1"},
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

// tlsReloader serves the TLS configuration built from the files of cfg and
// builds it again on reload (SIGHUP), so a renewed certificate, key or
// client CA file is used by new connections without a restart. A reload
// that fails keeps the configuration in force and says why in the log.
// tls_client_roles is configuration, not a file, and is not reloaded.
type tlsReloader struct {
	cfg    Config
	logger *slog.Logger
	cur    atomic.Pointer[tls.Config]
}

// newTLSReloader returns nil when cfg has no TLS.
func newTLSReloader(cfg Config, logger *slog.Logger) (*tlsReloader, error) {
	tc, err := serverTLS(cfg)
	if err != nil || tc == nil {
		return nil, err
	}
	r := &tlsReloader{cfg: cfg, logger: logger}
	r.cur.Store(tc)
	return r, nil
}

// Reload builds the configuration from the files again.
func (r *tlsReloader) Reload() error {
	tc, err := serverTLS(r.cfg)
	if err != nil {
		return fmt.Errorf("reload TLS files (the ones in force stay): %w", err)
	}
	r.cur.Store(tc)
	return nil
}

// serverConfig is the http.Server's TLS configuration: each handshake
// takes the configuration in force.
func (r *tlsReloader) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return r.cur.Load(), nil },
	}
}

// reloadOnHangup reloads on every SIGHUP until ctx ends or stop is called.
func (r *tlsReloader) reloadOnHangup(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := r.Reload(); err != nil {
					r.logger.Error("SIGHUP: TLS files not reloaded", "err", err)
					continue
				}
				r.logger.Info("SIGHUP: TLS certificate, key and client CA reloaded", "tls_cert", r.cfg.TLSCert)
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}
