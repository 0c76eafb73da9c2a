package keystore

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// FuzzVaultResponse: whatever a Vault (or something posing as one) answers
// — any status, any body — Wrap and Unwrap return bytes or an error, never
// panic, and no error ever carries the token or the key material sent,
// even when the answer echoes them.
func FuzzVaultResponse(f *testing.F) {
	const token = "s.fuzz-token-0123456789"
	const secret = "plaintext-key-material"
	f.Add(200, []byte(`{"data":{"ciphertext":"vault:v1:abc","plaintext":"cGxhaW4="}}`))
	f.Add(400, []byte(`{"errors":["bad token s.fuzz-token-0123456789"]}`))
	f.Add(500, []byte(`not json`))
	f.Add(200, []byte(`{"data":{"plaintext":"%%%"}}`))
	f.Add(403, []byte(`{"errors":[""]}`))
	f.Add(400, []byte(`{"errors":["cannot encrypt cGxhaW50ZXh0LWtleS1tYXRlcmlhbA=="]}`))
	f.Add(400, []byte(`{"errors":["bad ciphertext vault:v1:plaintext-key-material"]}`))
	var status atomic.Int64
	var body atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
		w.Write(*body.Load())
	}))
	defer srv.Close()
	m, err := VaultTransit(VaultConfig{Address: srv.URL, Token: token, KeyName: "stele"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, code int, resp []byte) {
		if code < 200 || code > 599 {
			code = 200 + (code%400+400)%400
		}
		status.Store(int64(code))
		body.Store(&resp)
		ctx := context.Background()
		if _, err := m.Wrap(ctx, []byte(secret)); err != nil {
			checkVaultError(t, err, token, base64.StdEncoding.EncodeToString([]byte(secret)))
		}
		if _, err := m.Unwrap(ctx, []byte("vault:v1:"+secret)); err != nil {
			checkVaultError(t, err, token, "vault:v1:"+secret)
		}
	})
}

func checkVaultError(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("error carries a secret: %v", err)
		}
	}
}
