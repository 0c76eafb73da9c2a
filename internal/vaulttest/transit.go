// Package vaulttest is a TEST DOUBLE of HashiCorp Vault's Transit signing
// API, not real Vault: Vault cannot be installed on this machine (it is not
// packaged in Debian, and `go install github.com/hashicorp/vault@latest` is
// refused because its go.mod has replace directives), so tests that need a
// Transit key of type ed25519 run against this server instead. It speaks
// the wire contract Stele relies on, as Vault documents it, and signs with
// real Ed25519 keys, so what it returns verifies like Vault's:
//
//	GET  /v1/<mount>/keys/<key>    -> {"data":{"type":"ed25519","latest_version":N,"keys":{"1":{"public_key":base64},…}}}
//	POST /v1/<mount>/sign/<key>    {"input":base64,"key_version":N} -> {"data":{"signature":"vault:vN:<base64>","key_version":N}}
//	POST /v1/<mount>/verify/<key>  {"input":base64,"signature":"vault:vN:…"} -> {"data":{"valid":bool}}
//
// X-Vault-Token is checked; failures answer {"errors":[…]} with the 4xx
// status Vault uses. It is never used outside tests.
package vaulttest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Transit is the test double: one mount, one token, named keys.
type Transit struct {
	URL   string
	mount string
	token string

	mu   sync.Mutex
	keys map[string]*key
	// Signs counts sign calls answered.
	signs int
}

type key struct {
	typ      string
	versions []ed25519.PrivateKey // version i+1
}

// New starts the double, closed when the test ends.
func New(t testing.TB, mount, token string) *Transit {
	t.Helper()
	tr := &Transit{mount: mount, token: token, keys: map[string]*key{}}
	srv := httptest.NewServer(tr)
	t.Cleanup(srv.Close)
	tr.URL = srv.URL
	return tr
}

// CreateKey creates a key of type typ (ed25519, or another type that can
// only be read, to test refusals), like POST /v1/<mount>/keys/<name>.
func (tr *Transit) CreateKey(name, typ string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.keys[name] = &key{typ: typ}
	tr.rotateLocked(name)
}

// Rotate adds a new version to the key, like POST /v1/<mount>/keys/<name>/rotate.
func (tr *Transit) Rotate(name string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.rotateLocked(name)
}

func (tr *Transit) rotateLocked(name string) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	k := tr.keys[name]
	k.versions = append(k.versions, priv)
}

// PublicKey returns the public key of a version.
func (tr *Transit) PublicKey(name string, version int) ed25519.PublicKey {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.keys[name].versions[version-1].Public().(ed25519.PublicKey)
}

// SetToken changes the accepted token (a revoked or rotated token).
func (tr *Transit) SetToken(token string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.token = token
}

// Signs is the number of signatures made.
func (tr *Transit) Signs() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.signs
}

func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string][]string{"errors": {msg}})
}

func (tr *Transit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if r.Header.Get("X-Vault-Token") != tr.token {
		fail(w, http.StatusForbidden, "permission denied")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/"+tr.mount+"/")
	op, name, _ := strings.Cut(rest, "/")
	k := tr.keys[name]
	if !ok || k == nil || (op != "keys" && op != "sign" && op != "verify") {
		fail(w, http.StatusNotFound, "no handler for route \""+r.URL.Path+"\"")
		return
	}
	var out any
	switch {
	case op == "keys" && r.Method == http.MethodGet:
		keys := map[string]any{}
		for i, priv := range k.versions {
			keys[strconv.Itoa(i+1)] = map[string]any{
				"name": k.typ, "creation_time": "2026-12-01T09:00:00Z",
				"public_key": base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)),
			}
		}
		out = map[string]any{"name": name, "type": k.typ, "latest_version": len(k.versions), "keys": keys, "supports_signing": k.typ == "ed25519"}
	case (op == "sign" || op == "verify") && r.Method == http.MethodPost:
		if k.typ != "ed25519" {
			fail(w, http.StatusBadRequest, "key type "+k.typ+" does not support signing")
			return
		}
		var in struct {
			Input      string `json:"input"`
			KeyVersion int    `json:"key_version"`
			Signature  string `json:"signature"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			fail(w, http.StatusBadRequest, "failed to parse JSON input")
			return
		}
		msg, err := base64.StdEncoding.DecodeString(in.Input)
		if err != nil {
			fail(w, http.StatusBadRequest, "unable to decode input as base64")
			return
		}
		if op == "sign" {
			ver := in.KeyVersion
			if ver == 0 {
				ver = len(k.versions)
			}
			if ver < 1 || ver > len(k.versions) {
				fail(w, http.StatusBadRequest, "invalid key version")
				return
			}
			tr.signs++
			sig := ed25519.Sign(k.versions[ver-1], msg)
			out = map[string]any{"signature": "vault:v" + strconv.Itoa(ver) + ":" + base64.StdEncoding.EncodeToString(sig), "key_version": ver}
			break
		}
		verText, b64, ok := strings.Cut(strings.TrimPrefix(in.Signature, "vault:v"), ":")
		ver, err := strconv.Atoi(verText)
		sig, serr := base64.StdEncoding.DecodeString(b64)
		if !ok || err != nil || serr != nil || ver < 1 || ver > len(k.versions) {
			fail(w, http.StatusBadRequest, "invalid signature")
			return
		}
		out = map[string]any{"valid": ed25519.Verify(k.versions[ver-1].Public().(ed25519.PublicKey), msg, sig)}
	default:
		fail(w, http.StatusMethodNotAllowed, "unsupported operation")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"data": out})
}
