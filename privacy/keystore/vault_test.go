package keystore

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeVaultTransit is a TEST DOUBLE of HashiCorp Vault's Transit engine, not
// real Vault: Vault cannot be installed on this machine (it is not packaged
// in Debian, and `go install github.com/hashicorp/vault@latest` is refused
// because its go.mod has replace directives). It implements the wire
// contract the client relies on, as documented by Vault:
//
//	POST /v1/<mount>/encrypt/<key>  {"plaintext": base64}   -> {"data":{"ciphertext":"vault:v1:<base64>"}}
//	POST /v1/<mount>/decrypt/<key>  {"ciphertext": "vault:v1:…"} -> {"data":{"plaintext": base64}}
//	X-Vault-Token checked; failures answer {"errors":[…]} with 4xx like Vault.
type fakeVaultTransit struct {
	mount, key, token string
	aead              cipher.AEAD
	calls             atomic.Int64
}

func newFakeVaultTransit(t testing.TB, mount, key, token string) (*fakeVaultTransit, *httptest.Server) {
	k := make([]byte, 32)
	rand.Read(k)
	b, _ := aes.NewCipher(k)
	a, _ := cipher.NewGCM(b)
	f := &fakeVaultTransit{mount: mount, key: key, token: token, aead: a}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeVaultTransit) fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string][]string{"errors": {msg}})
}

func (f *fakeVaultTransit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if r.Header.Get("X-Vault-Token") != f.token {
		f.fail(w, http.StatusForbidden, "permission denied")
		return
	}
	var op string
	switch r.URL.Path {
	case "/v1/" + f.mount + "/encrypt/" + f.key:
		op = "encrypt"
	case "/v1/" + f.mount + "/decrypt/" + f.key:
		op = "decrypt"
	default:
		f.fail(w, http.StatusNotFound, "no handler for route \""+r.URL.Path+"\"")
		return
	}
	if r.Method != http.MethodPost {
		f.fail(w, http.StatusMethodNotAllowed, "unsupported operation")
		return
	}
	var in struct{ Plaintext, Ciphertext string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		f.fail(w, http.StatusBadRequest, "failed to parse JSON input")
		return
	}
	var out map[string]string
	switch op {
	case "encrypt":
		pt, err := base64.StdEncoding.DecodeString(in.Plaintext)
		if err != nil {
			f.fail(w, http.StatusBadRequest, "failed to base64-decode plaintext")
			return
		}
		nonce := make([]byte, f.aead.NonceSize())
		rand.Read(nonce)
		ct := f.aead.Seal(nonce, nonce, pt, nil)
		out = map[string]string{"ciphertext": "vault:v1:" + base64.StdEncoding.EncodeToString(ct), "key_version": "1"}
	case "decrypt":
		raw, ok := strings.CutPrefix(in.Ciphertext, "vault:v1:")
		ct, err := base64.StdEncoding.DecodeString(raw)
		if !ok || err != nil || len(ct) < f.aead.NonceSize() {
			f.fail(w, http.StatusBadRequest, "invalid ciphertext: no prefix")
			return
		}
		ns := f.aead.NonceSize()
		pt, err := f.aead.Open(nil, ct[:ns], ct[ns:], nil)
		if err != nil {
			f.fail(w, http.StatusBadRequest, "cipher: message authentication failed")
			return
		}
		out = map[string]string{"plaintext": base64.StdEncoding.EncodeToString(pt)}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"data": out})
}

func TestVaultTransitTestDoubleStoreRoundTripAndRotation(t *testing.T) {
	ctx := context.Background()
	fake, srv := newFakeVaultTransit(t, "transit", "stele", "s.goodtoken")
	vm, err := VaultTransit(VaultConfig{Address: srv.URL, Token: "s.goodtoken", KeyName: "stele"})
	if err != nil {
		t.Fatal(err)
	}
	if vm.ID() != "vault-transit:transit/stele" {
		t.Fatalf("id %q", vm.ID())
	}
	w, err := vm.Wrap(ctx, []byte("secret"))
	if err != nil || !bytes.HasPrefix(w, []byte("vault:v1:")) {
		t.Fatalf("wrap: %v %q", err, w)
	}
	dir := t.TempDir()
	s := openT(t, dir, vm, Options{CacheSize: -1})
	kid, key, err := s.GetOrCreate(ctx, KindSubject, "subj")
	if err != nil {
		t.Fatal(err)
	}
	before := fake.calls.Load()
	if got, err := s.Key(ctx, kid); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Key via vault: %v", err)
	}
	if fake.calls.Load() != before+1 {
		t.Fatal("uncached Key did not call Vault decrypt")
	}
	// Token revoked while running: Key reports Vault's 403, not the token.
	fake.token = "s.rotated"
	var ve *VaultError
	if _, err := s.Key(ctx, kid); !errors.As(err, &ve) || ve.StatusCode != 403 || ve.Op != "decrypt" || strings.Contains(err.Error(), "s.goodtoken") || !strings.Contains(err.Error(), kid) {
		t.Fatalf("Key with revoked token: %v", err)
	}
	fake.token = "s.goodtoken"
	// Rotate off Vault to a local key and back: every wrapping moves.
	local := testMaster(t, 3)
	if err := s.Rotate(ctx, local); err != nil {
		t.Fatal(err)
	}
	if err := s.Rotate(ctx, vm); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir, vm, Options{})
	defer s.Close()
	if got, err := s.Key(ctx, kid); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("after reopen: %v", err)
	}
}

func TestVaultTransitTestDoubleErrorsAreClearAndHideToken(t *testing.T) {
	ctx := context.Background()
	_, srv := newFakeVaultTransit(t, "transit", "stele", "s.goodtoken")
	const badToken = "s.SECRET-bad-token-value"
	vm, err := VaultTransit(VaultConfig{Address: srv.URL, Token: badToken, KeyName: "stele"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = vm.Wrap(ctx, []byte("k"))
	var ve *VaultError
	if !errors.As(err, &ve) || ve.StatusCode != 403 || ve.Op != "encrypt" {
		t.Fatalf("403 not surfaced: %v", err)
	}
	for _, want := range []string{"HTTP 403", "permission denied", "vault-transit:transit/stele", srv.URL, "token lacks permission"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), badToken) {
		t.Fatalf("token in error: %v", err)
	}
	// Through the store: Open of a new store fails on the canary wrap.
	if _, err := Open(ctx, t.TempDir(), vm, Options{}); !errors.As(err, &ve) || strings.Contains(err.Error(), badToken) {
		t.Fatalf("open with bad token: %v", err)
	}

	wrongKey, _ := VaultTransit(VaultConfig{Address: srv.URL, Token: "s.goodtoken", KeyName: "nope", Mount: "/transit/"})
	if _, err := wrongKey.Wrap(ctx, []byte("k")); !errors.As(err, &ve) || ve.StatusCode != 404 || !strings.Contains(err.Error(), "mounted") {
		t.Fatalf("404: %v", err)
	}
	good, _ := VaultTransit(VaultConfig{Address: srv.URL, Token: "s.goodtoken", KeyName: "stele"})
	if _, err := good.Unwrap(ctx, []byte("vault:v1:AAAA")); !errors.As(err, &ve) || ve.StatusCode != 400 {
		t.Fatalf("bad ciphertext: %v", err)
	}
	srv.Close()
	if _, err := good.Wrap(ctx, []byte("k")); err == nil || strings.Contains(err.Error(), "s.goodtoken") {
		t.Fatalf("unreachable vault: %v", err)
	}
}

func TestVaultTransitConfigValidation(t *testing.T) {
	for _, c := range []struct {
		cfg  VaultConfig
		want string
	}{
		{VaultConfig{Token: "t", KeyName: "k"}, "Address is empty"},
		{VaultConfig{Address: "vault:8200", Token: "t", KeyName: "k"}, "http(s) URL"},
		{VaultConfig{Address: "http://v", KeyName: "k"}, "Token is empty"},
		{VaultConfig{Address: "http://v", Token: "t"}, "KeyName is empty"},
		{VaultConfig{Address: "http://v", Token: "t", KeyName: "a/b"}, "must not contain"},
	} {
		if _, err := VaultTransit(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg.Address, err, c.want)
		}
	}
}
