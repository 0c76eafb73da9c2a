package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele/auth"
	"github.com/stele/stele/deadletter"
	"github.com/stele/stele/logstore"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/record"
	"github.com/stele/stele/schema"
	"github.com/stele/stele/sysrecord"
)

// keyStore is a keystore the server runs on: the file store in the data
// directory, or the KV bucket a cluster shares (keystore.OpenKV).
type keyStore interface {
	privacy.Keys
	Close() error
}

// Both backends serve the server the same way.
var (
	_ keyStore = (*keystore.Store)(nil)
	_ keyStore = (*keystore.KVStore)(nil)
)

// privacyStack is the keystore, the schema registry and the guard that
// seals with them.
type privacyStack struct {
	keys    keyStore
	schemas *schema.Registry
	guard   *privacy.Guard
}

func (p *privacyStack) Close() error { return p.keys.Close() }

// masterKey picks the keystore's master key provider: Vault Transit when
// configured, else a key given in the environment, else the key file.
func masterKey(cfg Config) (keystore.MasterKey, error) {
	switch {
	case cfg.VaultAddr != "" || cfg.VaultKey != "":
		if cfg.VaultAddr == "" || cfg.VaultKey == "" || cfg.VaultToken == "" {
			return nil, errors.New("vault: vault_addr, vault_key and vault_token (STELE_VAULT_TOKEN) are all needed")
		}
		return keystore.VaultTransit(keystore.VaultConfig{Address: cfg.VaultAddr, Token: cfg.VaultToken, KeyName: cfg.VaultKey, Mount: cfg.VaultMount})
	case cfg.MasterKey != "":
		return keystore.EnvMaster(cfg.MasterKey)
	}
	path := cfg.MasterKeyFile
	if path == "" {
		path = filepath.Join(cfg.Data, "master.key")
	}
	return keystore.FileMaster(path)
}

// masterKeyInData reports the master key file when it sits inside the data
// directory (the default): a copy of the directory then holds every key.
func masterKeyInData(cfg Config) (string, bool) {
	if cfg.VaultAddr != "" || cfg.VaultKey != "" || cfg.MasterKey != "" {
		return "", false
	}
	path := cfg.MasterKeyFile
	if path == "" {
		path = filepath.Join(cfg.Data, "master.key")
	}
	p, err1 := filepath.Abs(path)
	d, err2 := filepath.Abs(cfg.Data)
	if err1 != nil || err2 != nil {
		return path, false
	}
	rel, err := filepath.Rel(d, p)
	return path, err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// openKeys opens the configured keystore: the file store in the data
// directory, or the KV bucket of keystore.nats_url.
func openKeys(ctx context.Context, cfg Config, master keystore.MasterKey, logger *slog.Logger) (keyStore, error) {
	kc := cfg.Keystore
	if kc.Kind != "nats" {
		return keystore.Open(ctx, filepath.Join(cfg.Data, "keystore"), master, keystore.Options{Logger: logger})
	}
	if kc.NATSURL == "" {
		return nil, errors.New("keystore.nats_url: required with keystore kind nats (the NATS JetStream cluster holding the keys)")
	}
	bucket, replicas := kc.Bucket, kc.Replicas
	if bucket == "" {
		bucket = "STELE_KEYS"
	}
	if replicas == 0 {
		replicas = 3
	}
	nc, err := nats.Connect(kc.NATSURL, nats.Name("stele-keystore"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second))
	if err != nil {
		// The URL may carry credentials; the error does not repeat it.
		return nil, fmt.Errorf("keystore.nats_url: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("keystore.nats_url: %w", err)
	}
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	kv, err := keystore.OpenKV(octx, js, bucket, master, keystore.Options{Logger: logger, Replicas: replicas})
	if err != nil {
		nc.Close()
		return nil, err
	}
	logger.Info("keystore: NATS JetStream KV bucket", "bucket", bucket, "replicas", replicas, "servers", len(nc.Servers()))
	return &kvKeys{KVStore: kv, nc: nc}, nil
}

// kvKeys is the KV keystore and the connection it alone uses.
type kvKeys struct {
	*keystore.KVStore
	nc *nats.Conn
}

func (k *kvKeys) Close() error {
	err := k.KVStore.Close()
	k.nc.Close()
	return err
}

func openPrivacy(ctx context.Context, cfg Config, logger *slog.Logger) (*privacyStack, error) {
	master, err := masterKey(cfg)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if path, inside := masterKeyInData(cfg); inside {
		logger.Warn("the master key file is inside the data directory: a copy of the directory unwraps every key, reads sealed personal data "+
			"and can forge batches that recovery adopts; keep the file on another disk (master_key_file), or use STELE_MASTER_KEY or Vault Transit",
			"file", path)
	}
	keys, err := openKeys(ctx, cfg, master, logger)
	if err != nil {
		return nil, err
	}
	var schemaFiles []SchemaFile
	if cfg.Schemas != nil {
		schemaFiles = *cfg.Schemas
	}
	schemas, err := openSchemas(ctx, cfg.Data, schemaFiles, logger)
	if err != nil {
		keys.Close()
		return nil, err
	}
	guard, err := privacy.New(ctx, keys, schemas, privacy.Options{Logger: logger})
	if err != nil {
		keys.Close()
		return nil, err
	}
	return &privacyStack{keys: keys, schemas: schemas, guard: guard}, nil
}

// apiPrivacy is the API's view of the privacy layer.
type apiPrivacy struct {
	*privacy.Guard
	*privacy.Ledger
}

// requireTokensOffLoopback refuses to serve an open API beyond this host.
func requireTokensOffLoopback(addr, data string, tokens *auth.Tokens, certRoles bool, logger *slog.Logger) error {
	if !tokens.Empty() {
		logger.Info("API tokens required", "tokens", len(tokens.List()))
		return nil
	}
	if certRoles {
		// Client certificates authenticate; without one a request is
		// refused, tokens or not.
		return nil
	}
	loopback, err := isLoopback(addr)
	if err != nil {
		return err
	}
	if !loopback {
		return fmt.Errorf("addr %s is not loopback and no API token exists: anyone could read and write the log; "+
			"create one with `stele token create --data %s --role admin --name NAME`, or listen on 127.0.0.1", addr, data)
	}
	return nil
}

// warnIfOpen says loudly, once the server listens on addr, that it has no
// tokens and is open to whoever reaches addr.
func warnIfOpen(data, addr string, logger *slog.Logger) {
	tokens, err := auth.Open(data)
	if err != nil || !tokens.Empty() {
		return
	}
	logger.Warn("NO API TOKENS: the server is OPEN to anyone who can reach " + addr + " (loopback only); " +
		"create tokens with `stele token create --data " + data + "` to require them")
}

// recordTokenChanges appends an admin record whenever the set of tokens
// in force changes (at start and while running), so creating a token —
// done offline with `stele token create` — is itself in the log.
func recordTokenChanges(ctx context.Context, store deadletter.Appender, tokens *auth.Tokens, logger *slog.Logger, every time.Duration) {
	last := ""
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		list := tokens.List()
		var parts []string
		detail := make([]map[string]string, 0, len(list))
		for _, p := range list {
			parts = append(parts, p.Name+"="+string(p.Role))
			detail = append(detail, map[string]string{"name": p.Name, "role": string(p.Role)})
		}
		slices.Sort(parts)
		if fp := strings.Join(parts, "\n"); fp != last && len(list) > 0 {
			r, err := sysrecord.Admin(auth.Principal{Name: "stele", Role: auth.RoleAdmin}, "tokens in force", map[string]any{"tokens": detail}, time.Now())
			if err == nil {
				_, err = store.Append(ctx, []*record.Record{r})
			}
			if err != nil {
				if ctx.Err() == nil {
					logger.Error("could not record the API tokens in force", "err", err)
				}
			} else {
				last = fp
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// offlineSealer opens the privacy layer of a stopped server's data
// directory for a command that opens its log: the sealer, which also
// rederives the personal-data entries of records the index catches up on
// (logstore.Sealer.Rederive; without them records would be indexed without
// blind-index terms and subject counts), and the batch authenticator, so
// that what the command appends is sealed as the server seals it and its
// recovery adopts only batches this log's writer sealed. A directory without a keystore (never served) gets neither: its
// batches are adopted once the writer's closing checkpoint covers them.
func offlineSealer(ctx context.Context, cfg Config, origin string, logger *slog.Logger) (sealer logstore.Sealer, batches logstore.BatchSealer, release func(), err error) {
	if _, err := os.Stat(filepath.Join(cfg.Data, "keystore")); errors.Is(err, os.ErrNotExist) && cfg.Keystore.Kind != "nats" {
		return nil, nil, func() {}, nil
	}
	priv, err := openPrivacy(ctx, cfg, logger)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open the keystore (the index needs it to rebuild its personal-data entries): %w", err)
	}
	mac, err := keystore.NewBatchMAC(ctx, priv.keys, origin)
	if err != nil {
		priv.Close()
		return nil, nil, nil, err
	}
	return priv.guard, mac, func() { priv.Close() }, nil
}
