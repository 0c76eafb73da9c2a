package publish

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures an in-process NATS server with JetStream.
type EmbeddedConfig struct {
	// Dir holds JetStream's store (Stele uses <data>/nats).
	Dir string
	// Listen is the host:port the server accepts NATS clients on, so
	// consumers in other processes can subscribe. Empty means in-process
	// only: the publisher still works, nobody else can connect.
	Listen string
	Logger *slog.Logger
}

// Embedded is a NATS server with JetStream running inside this process.
type Embedded struct {
	srv    *server.Server
	listen string
}

// StartEmbedded starts the server and waits until it accepts connections.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Dir == "" {
		return nil, errors.New("embedded NATS: Dir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	opts := &server.Options{
		ServerName: "stele-embedded",
		JetStream:  true,
		StoreDir:   cfg.Dir,
		NoSigs:     true, // the process's signals belong to stele
		DontListen: cfg.Listen == "",
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS listen %q: want host:port: %w", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return nil, fmt.Errorf("embedded NATS listen %q: port %q is not a number from 0 to 65535", cfg.Listen, port)
		}
		opts.Host, opts.Port = host, p
		if p == 0 {
			opts.Port = server.RANDOM_PORT
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	srv.SetLoggerV2(slogAdapter{cfg.Logger.With("component", "nats")}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		if cfg.Listen != "" {
			return nil, fmt.Errorf("embedded NATS did not start listening on %s (is the port in use?)", cfg.Listen)
		}
		return nil, errors.New("embedded NATS did not start")
	}
	e := &Embedded{srv: srv}
	if cfg.Listen != "" {
		if addr, ok := srv.Addr().(*net.TCPAddr); ok {
			e.listen = addr.String()
		}
	}
	return e, nil
}

// Connect opens an in-process client connection (no TCP).
func (e *Embedded) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(e.srv), nats.Name("stele")}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to embedded NATS: %w", err)
	}
	return nc, nil
}

// ClientURL is nats://host:port for clients in other processes, or "" when
// the server listens in-process only.
func (e *Embedded) ClientURL() string {
	if e.listen == "" {
		return ""
	}
	return "nats://" + e.listen
}

// Shutdown stops the server and waits for it, flushing JetStream's store.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// slogAdapter routes nats-server's log through slog. Its notices (a
// start-up banner of a dozen lines) go to debug; Fatalf must not exit the
// process, so it logs at error.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any)  {}
