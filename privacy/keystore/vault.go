package keystore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// VaultConfig selects a HashiCorp Vault Transit key.
type VaultConfig struct {
	Address   string // e.g. https://vault.example:8200
	Token     string // sent as X-Vault-Token; never logged or put in errors
	Mount     string // transit mount path; default "transit"
	KeyName   string // transit key name
	Namespace string // optional Vault Enterprise namespace (X-Vault-Namespace)
	// HTTPClient defaults to a client with a 30 s timeout.
	HTTPClient *http.Client
}

// vaultTransit talks to Vault's Transit engine with plain net/http. The
// official github.com/hashicorp/vault/api client would add 18 modules to
// go.mod (HCL, go-jose, the archived mapstructure, retryablehttp, …) for two
// JSON POSTs, and it reads VAULT_* environment variables on its own, next to
// Stele's STELE_* configuration. Two endpoints are small enough to own.
type vaultTransit struct {
	cfg      VaultConfig
	base     string // <address>/v1/<mount>
	encURL   string
	decURL   string
	id       string
	client   *http.Client
	maxError int
}

// VaultTransit returns a MasterKey backed by Vault Transit: Wrap calls
// POST /v1/<mount>/encrypt/<key>, Unwrap POST /v1/<mount>/decrypt/<key>. The
// wrapped form is Vault's ciphertext text ("vault:v1:…"), so Vault-side key
// rotation keeps working; the ID names mount and key.
func VaultTransit(cfg VaultConfig) (MasterKey, error) {
	client, err := newVaultClient(cfg)
	if err != nil {
		return nil, err
	}
	key := url.PathEscape(client.cfg.KeyName)
	client.encURL = client.base + "/encrypt/" + key
	client.decURL = client.base + "/decrypt/" + key
	return client, nil
}

// newVaultClient checks cfg and fills its defaults.
func newVaultClient(cfg VaultConfig) (*vaultTransit, error) {
	if cfg.Address == "" {
		return nil, errors.New("vault transit: Address is empty; want e.g. https://vault.example:8200")
	}
	u, err := url.Parse(cfg.Address)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("vault transit: Address %q: want an http(s) URL with a host", cfg.Address)
	}
	if cfg.Token == "" {
		return nil, errors.New("vault transit: Token is empty")
	}
	if cfg.KeyName == "" {
		return nil, errors.New("vault transit: KeyName is empty")
	}
	if strings.ContainsAny(cfg.KeyName, "/?#") {
		return nil, fmt.Errorf("vault transit: KeyName %q: must not contain '/', '?' or '#'", cfg.KeyName)
	}
	if cfg.Mount == "" {
		cfg.Mount = "transit"
	}
	cfg.Mount = strings.Trim(cfg.Mount, "/")
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	return &vaultTransit{
		cfg:      cfg,
		base:     strings.TrimRight(cfg.Address, "/") + "/v1/" + cfg.Mount,
		id:       "vault-transit:" + cfg.Mount + "/" + cfg.KeyName,
		client:   client,
		maxError: 512,
	}, nil
}

func (v *vaultTransit) ID() string { return v.id }

func (v *vaultTransit) Wrap(ctx context.Context, plaintext []byte) ([]byte, error) {
	var out struct {
		Data struct {
			Ciphertext string `json:"ciphertext"`
		} `json:"data"`
	}
	if err := v.call(ctx, "encrypt", v.encURL, map[string]string{"plaintext": base64.StdEncoding.EncodeToString(plaintext)}, &out); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(out.Data.Ciphertext, "vault:") {
		return nil, fmt.Errorf("vault transit encrypt (%s at %s): response has no vault ciphertext", v.id, v.cfg.Address)
	}
	return []byte(out.Data.Ciphertext), nil
}

func (v *vaultTransit) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	var out struct {
		Data struct {
			Plaintext string `json:"plaintext"`
		} `json:"data"`
	}
	if err := v.call(ctx, "decrypt", v.decURL, map[string]string{"ciphertext": string(wrapped)}, &out); err != nil {
		return nil, err
	}
	pt, err := base64.StdEncoding.DecodeString(out.Data.Plaintext)
	if err != nil {
		return nil, fmt.Errorf("vault transit decrypt (%s at %s): plaintext in response is not base64", v.id, v.cfg.Address)
	}
	return pt, nil
}

// VaultError is an error answer from Vault. It carries Vault's own messages
// (never the token or the payload).
type VaultError struct {
	Op         string // "encrypt", "decrypt", "sign" or "read key"
	KeyID      string
	Address    string
	StatusCode int
	Messages   []string
}

func (e *VaultError) Error() string {
	msg := "no error message"
	if len(e.Messages) > 0 {
		msg = strings.Join(e.Messages, "; ")
	}
	hint := ""
	switch e.StatusCode {
	case http.StatusForbidden:
		hint = " (token lacks permission on this transit key, or has expired)"
	case http.StatusNotFound:
		hint = " (is the transit engine mounted there and the key created?)"
	}
	return fmt.Sprintf("vault transit %s (%s at %s): HTTP %d: %s%s", e.Op, e.KeyID, e.Address, e.StatusCode, msg, hint)
}

func (v *vaultTransit) call(ctx context.Context, op, endpoint string, in any, out any) error {
	return v.do(ctx, op, http.MethodPost, endpoint, in, out)
}

// do sends one request; in is the JSON body (nil for none).
func (v *vaultTransit) do(ctx context.Context, op, method, endpoint string, in any, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("vault transit %s: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint, body)
	if err != nil {
		return fmt.Errorf("vault transit %s (%s at %s): %w", op, v.id, v.cfg.Address, err)
	}
	req.Header.Set("X-Vault-Token", v.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	if v.cfg.Namespace != "" {
		req.Header.Set("X-Vault-Namespace", v.cfg.Namespace)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		// *url.Error carries the URL, which holds no secret (the token is a header).
		return fmt.Errorf("vault transit %s (%s at %s): %w", op, v.id, v.cfg.Address, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("vault transit %s (%s at %s): read response: %w", op, v.id, v.cfg.Address, err)
	}
	if resp.StatusCode/100 != 2 {
		ve := &VaultError{Op: op, KeyID: v.id, Address: v.cfg.Address, StatusCode: resp.StatusCode}
		var e struct {
			Errors []string `json:"errors"`
		}
		if json.Unmarshal(raw, &e) == nil {
			for _, m := range e.Errors {
				m = strings.ReplaceAll(m, v.cfg.Token, "[token]") // defensive: never echo the token
				if sent, ok := in.(map[string]string); ok {
					for _, val := range sent { // nor the key material sent
						if val != "" {
							m = strings.ReplaceAll(m, val, "[payload]")
						}
					}
				}
				if len(m) > v.maxError {
					m = m[:v.maxError] + "…"
				}
				ve.Messages = append(ve.Messages, m)
			}
		}
		return ve
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("vault transit %s (%s at %s): response is not the expected JSON: %w", op, v.id, v.cfg.Address, err)
	}
	return nil
}
