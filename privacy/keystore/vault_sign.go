package keystore

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// TransitSigner signs notes (C2SP signed-note, Ed25519) with a Vault Transit
// key of type ed25519, so the private key never leaves Vault: a copy of the
// data directory is then not enough to sign a checkpoint or a receipt. Its
// signatures are plain Ed25519 signatures over the note text, the same
// bytes note.Sign would make with the key in a file, so verifiers need
// nothing but the ordinary verifier key (VerifierKey).
//
// It signs with one pinned key version: rotating the Transit key must not
// silently change the log's verifier key, which would orphan every earlier
// checkpoint.
type TransitSigner struct {
	v       *vaultTransit
	signURL string
	name    string
	hash    uint32
	pub     ed25519.PublicKey
	version int
	vkey    string
}

// VaultTransitSigner reads the Transit key cfg.KeyName (GET
// /v1/<mount>/keys/<key>) and returns a signer named name that signs with
// POST /v1/<mount>/sign/<key>. pinned is the verifier key the log already
// has (empty for a new log): the key version whose public key gives it is
// used, whatever the latest version is; without one, the latest version is.
func VaultTransitSigner(ctx context.Context, cfg VaultConfig, name, pinned string) (*TransitSigner, error) {
	v, err := newVaultClient(cfg)
	if err != nil {
		return nil, err
	}
	key := url.PathEscape(v.cfg.KeyName)
	var out struct {
		Data struct {
			Type          string `json:"type"`
			LatestVersion int    `json:"latest_version"`
			Keys          map[string]struct {
				PublicKey string `json:"public_key"`
			} `json:"keys"`
		} `json:"data"`
	}
	if err := v.do(ctx, "read key", http.MethodGet, v.base+"/keys/"+key, nil, &out); err != nil {
		return nil, err
	}
	where := fmt.Sprintf("vault transit key %s at %s", v.id, v.cfg.Address)
	if out.Data.Type != "ed25519" {
		return nil, fmt.Errorf("%s is of type %q; signing checkpoints needs type ed25519 (vault write -f %s/keys/NAME type=ed25519)", where, out.Data.Type, v.cfg.Mount)
	}
	s := &TransitSigner{v: v, signURL: v.base + "/sign/" + key, name: name}
	versions := make([]int, 0, len(out.Data.Keys))
	pubs := make(map[int]ed25519.PublicKey, len(out.Data.Keys))
	for ver, k := range out.Data.Keys {
		n, err := strconv.Atoi(ver)
		pub, perr := base64.StdEncoding.DecodeString(k.PublicKey)
		if err != nil || perr != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%s: version %q has no 32-byte base64 public_key", where, ver)
		}
		versions = append(versions, n)
		pubs[n] = pub
	}
	sort.Ints(versions)
	pick := func(ver int) error {
		vkey, err := note.NewEd25519VerifierKey(name, pubs[ver])
		if err != nil {
			return fmt.Errorf("%s: name %q: %w", where, name, err)
		}
		verifier, err := note.NewVerifier(vkey)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		s.pub, s.version, s.vkey, s.hash = pubs[ver], ver, vkey, verifier.KeyHash()
		return nil
	}
	if pinned == "" {
		if _, ok := pubs[out.Data.LatestVersion]; !ok {
			return nil, fmt.Errorf("%s: latest_version %d has no public key", where, out.Data.LatestVersion)
		}
		return s, pick(out.Data.LatestVersion)
	}
	for _, ver := range versions {
		if err := pick(ver); err != nil {
			return nil, err
		}
		if s.vkey == pinned {
			return s, nil
		}
	}
	pinnedName, _, _ := strings.Cut(pinned, "+")
	return nil, fmt.Errorf("%s: none of its versions %v is the log's verifier key (origin %q, key hash %s): "+
		"the log was signed with another key; configure that key, or import it into Transit", where, versions, pinnedName, keyHashOf(pinned))
}

// keyHashOf is the key hash field of a verifier key, for messages.
func keyHashOf(vkey string) string {
	parts := strings.Split(vkey, "+")
	if len(parts) != 3 {
		return "(unreadable)"
	}
	return parts[1]
}

// Name is the key's name: the log's origin.
func (s *TransitSigner) Name() string { return s.name }

// KeyHash is the note key hash of the pinned version's public key.
func (s *TransitSigner) KeyHash() uint32 { return s.hash }

// VerifierKey is the public verifier key (<name>+<hash>+<base64>).
func (s *TransitSigner) VerifierKey() string { return s.vkey }

// Version is the Transit key version it signs with.
func (s *TransitSigner) Version() int { return s.version }

// Sign implements note.Signer; note.Signer has no context, so the call is
// bounded by the HTTP client's timeout. Callers holding a context use
// SignContext.
func (s *TransitSigner) Sign(msg []byte) ([]byte, error) {
	return s.SignContext(context.Background(), msg)
}

// SignContext signs msg with the pinned key version, and checks the answer
// against the public key before returning it: a signature by any other key
// would make a checkpoint no verifier accepts.
func (s *TransitSigner) SignContext(ctx context.Context, msg []byte) ([]byte, error) {
	var out struct {
		Data struct {
			Signature string `json:"signature"`
		} `json:"data"`
	}
	in := map[string]any{"input": base64.StdEncoding.EncodeToString(msg), "key_version": s.version}
	if err := s.v.do(ctx, "sign", http.MethodPost, s.signURL, in, &out); err != nil {
		return nil, err
	}
	where := fmt.Sprintf("vault transit sign (%s version %d at %s)", s.v.id, s.version, s.v.cfg.Address)
	prefix := "vault:v" + strconv.Itoa(s.version) + ":"
	b64, ok := strings.CutPrefix(out.Data.Signature, prefix)
	if !ok {
		return nil, fmt.Errorf("%s: signature does not start with %q", where, prefix)
	}
	sig, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%s: signature is not the base64 of %d bytes", where, ed25519.SignatureSize)
	}
	if !ed25519.Verify(s.pub, msg, sig) {
		return nil, fmt.Errorf("%s: %w", where, ErrBadSignature)
	}
	return sig, nil
}

// ErrBadSignature: Vault answered with a signature that does not verify
// under the pinned public key.
var ErrBadSignature = errors.New("signature does not verify under the key's public key")

// WithContext returns a note.Signer whose Sign calls are bounded by ctx.
func (s *TransitSigner) WithContext(ctx context.Context) note.Signer {
	return ctxSigner{s, ctx}
}

type ctxSigner struct {
	*TransitSigner
	ctx context.Context
}

func (c ctxSigner) Sign(msg []byte) ([]byte, error) { return c.SignContext(c.ctx, msg) }
