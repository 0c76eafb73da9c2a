// Package witness speaks the witness protocols of transparency logs, both
// ways: it cosigns other logs' checkpoints (C2SP tlog-witness, with
// tlog-cosignature/v1 Ed25519 cosignatures) and it checks that a log's
// checkpoint carries enough cosignatures under a policy (C2SP tlog-policy).
//
// A witness keeps, per log origin, the latest checkpoint it cosigned and
// cosigns a newer one only with a consistency proof from that one. So no
// operator can show two parties two histories both cosigned by a quorum of
// honest witnesses: a split view needs the witnesses to cosign both.
//
// The formats (cosignature, policy, add-checkpoint request) are pure and do
// no I/O; the Witness keeps its state with internal/atomicfile.
//
// A cosignature/v1 signature line is
//
//	— <witness name> base64(key ID[4] || timestamp[8, big endian] || Ed25519 signature[64])
//
// with key ID = SHA-256(name || "\n" || 0x04 || public key)[:4], over the
// message
//
//	cosignature/v1\n
//	time <timestamp, decimal>\n
//	<checkpoint note body>
package witness

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// algCosignatureV1 is the signature type byte of Ed25519 cosignature/v1
// keys (C2SP tlog-cosignature), distinct from a log's Ed25519 key (0x01) so
// that a log key can never be mistaken for a witness key.
const algCosignatureV1 = 0x04

// ErrKey: a witness key string is not a well-formed cosignature/v1 key.
var ErrKey = errors.New("bad witness key")

// keyID computes the 32-bit key ID (key hash) of a cosignature/v1 key.
func keyID(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', algCosignatureV1})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// CosignedMessage is what a cosignature/v1 signs: the fixed header, the
// time line and the checkpoint's note body.
func CosignedMessage(body []byte, timestamp uint64) []byte {
	var b bytes.Buffer
	b.WriteString("cosignature/v1\ntime ")
	b.WriteString(strconv.FormatUint(timestamp, 10))
	b.WriteByte('\n')
	b.Write(body)
	return b.Bytes()
}

// Cosigner makes cosignature/v1 signatures. It is a note.Signer, so
// note.Sign attaches its line to a checkpoint; the private key never leaves
// it and is never printed.
type Cosigner struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
	now  func() time.Time
}

// NewCosigner reads a private key made by GenerateKey. now gives the
// cosignature's time (time.Now when nil); tests pin it.
func NewCosigner(skey string, now func() time.Time) (*Cosigner, error) {
	// PRIVATE+KEY+<name>+<hash>+<base64(0x04 || seed)>, the shape of a
	// note signer key, so operators handle both alike.
	rest, ok := strings.CutPrefix(strings.TrimSpace(skey), "PRIVATE+KEY+")
	if !ok {
		return nil, fmt.Errorf("%w: private key does not start with PRIVATE+KEY+", ErrKey)
	}
	name, hash, material, err := splitKey(rest)
	if err != nil {
		return nil, err
	}
	if len(material) != 1+ed25519.SeedSize || material[0] != algCosignatureV1 {
		return nil, fmt.Errorf("%w: private key of %q is not a cosignature/v1 Ed25519 seed (type 0x04, %d bytes)", ErrKey, name, ed25519.SeedSize)
	}
	key := ed25519.NewKeyFromSeed(material[1:])
	if keyID(name, key.Public().(ed25519.PublicKey)) != hash {
		return nil, fmt.Errorf("%w: private key of %q: key hash %08x does not match the key", ErrKey, name, hash)
	}
	if now == nil {
		now = time.Now
	}
	return &Cosigner{name: name, hash: hash, key: key, now: now}, nil
}

// Name is the witness's name, the key name of its signature lines.
func (c *Cosigner) Name() string { return c.name }

// KeyHash is the cosignature/v1 key ID.
func (c *Cosigner) KeyHash() uint32 { return c.hash }

// Sign cosigns a checkpoint note body at the current time.
func (c *Cosigner) Sign(body []byte) ([]byte, error) {
	t := c.now().Unix()
	if t < 0 {
		return nil, fmt.Errorf("cosign: clock before 1970 (%d)", t)
	}
	sig := make([]byte, 8, 8+ed25519.SignatureSize)
	binary.BigEndian.PutUint64(sig, uint64(t))
	return append(sig, ed25519.Sign(c.key, CosignedMessage(body, uint64(t)))...), nil
}

// VerifierKey is the public key in vkey form, for a policy's witness line.
func (c *Cosigner) VerifierKey() string {
	return vkey(c.name, c.hash, c.key.Public().(ed25519.PublicKey))
}

func vkey(name string, hash uint32, pub ed25519.PublicKey) string {
	return fmt.Sprintf("%s+%08x+%s", name, hash, base64.StdEncoding.EncodeToString(append([]byte{algCosignatureV1}, pub...)))
}

// GenerateKey makes a new cosignature/v1 key pair named name: the private
// key string for NewCosigner and the verifier key for NewVerifier.
func GenerateKey(r io.Reader, name string) (skey, vkeyText string, err error) {
	if r == nil {
		r = rand.Reader
	}
	if !validKeyName(name) {
		return "", "", fmt.Errorf("%w: name %q must be non-empty, without spaces or '+'", ErrKey, name)
	}
	pub, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return "", "", fmt.Errorf("generate witness key: %w", err)
	}
	h := keyID(name, pub)
	skey = fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, h, base64.StdEncoding.EncodeToString(append([]byte{algCosignatureV1}, priv.Seed()...)))
	return skey, vkey(name, h, pub), nil
}

// Verifier checks cosignature/v1 signatures of one witness key. It is a
// note.Verifier, so note.Open counts the witness's lines.
type Verifier struct {
	name string
	hash uint32
	pub  ed25519.PublicKey
}

// NewVerifier parses a witness verifier key <name>+<hash>+<base64(0x04 ||
// public key)>.
func NewVerifier(vkeyText string) (*Verifier, error) {
	name, hash, material, err := splitKey(strings.TrimSpace(vkeyText))
	if err != nil {
		return nil, err
	}
	if len(material) != 1+ed25519.PublicKeySize || material[0] != algCosignatureV1 {
		return nil, fmt.Errorf("%w: verifier key of %q is not a cosignature/v1 Ed25519 key (type 0x04, %d bytes)", ErrKey, name, ed25519.PublicKeySize)
	}
	pub := ed25519.PublicKey(material[1:])
	if keyID(name, pub) != hash {
		return nil, fmt.Errorf("%w: verifier key of %q: key hash %08x does not match the key", ErrKey, name, hash)
	}
	return &Verifier{name: name, hash: hash, pub: pub}, nil
}

// Name is the witness's name.
func (v *Verifier) Name() string { return v.name }

// KeyHash is the cosignature/v1 key ID.
func (v *Verifier) KeyHash() uint32 { return v.hash }

// Verify reports whether sig is this witness's cosignature of body.
func (v *Verifier) Verify(body, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	if t > math.MaxInt64 {
		return false
	}
	return ed25519.Verify(v.pub, CosignedMessage(body, t), sig[8:])
}

// CosignatureTime is the time a cosignature/v1 signature says it was made.
func CosignatureTime(sig []byte) (time.Time, error) {
	if len(sig) != 8+ed25519.SignatureSize {
		return time.Time{}, fmt.Errorf("cosignature is %d bytes, want %d", len(sig), 8+ed25519.SignatureSize)
	}
	t := binary.BigEndian.Uint64(sig)
	if t > math.MaxInt64 {
		return time.Time{}, fmt.Errorf("cosignature timestamp %d exceeds 2^63-1", t)
	}
	return time.Unix(int64(t), 0).UTC(), nil
}

func validKeyName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "+ \t\n") && strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0
}

// splitKey splits <name>+<hash hex 8>+<base64 material>.
func splitKey(s string) (name string, hash uint32, material []byte, err error) {
	name, rest, ok1 := strings.Cut(s, "+")
	hashText, b64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 {
		return "", 0, nil, fmt.Errorf("%w: want <name>+<key hash>+<key>", ErrKey)
	}
	if !validKeyName(name) {
		return "", 0, nil, fmt.Errorf("%w: name %q must be non-empty, without spaces or '+'", ErrKey, name)
	}
	if len(hashText) != 8 || strings.Trim(hashText, "0123456789abcdef") != "" {
		return "", 0, nil, fmt.Errorf("%w: key hash %q of %q is not 8 lowercase hex digits", ErrKey, hashText, name)
	}
	h, err := strconv.ParseUint(hashText, 16, 32)
	if err != nil {
		return "", 0, nil, fmt.Errorf("%w: key hash %q of %q: %w", ErrKey, hashText, name, err)
	}
	material, err = base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return "", 0, nil, fmt.Errorf("%w: key of %q is not standard base64: %w", ErrKey, name, err)
	}
	return name, uint32(h), material, nil
}

var (
	_ note.Signer   = (*Cosigner)(nil)
	_ note.Verifier = (*Verifier)(nil)
)
