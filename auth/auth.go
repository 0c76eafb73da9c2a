// Package auth holds Stele's API tokens and the roles they carry.
//
// A token is a random bearer secret shown once, when it is created; the
// store keeps only its SHA-256, so a copy of the data directory grants no
// access. The token file is rewritten atomically, and a running server
// picks up tokens created by `stele token create` without a restart.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stele/stele/internal/atomicfile"
)

// Role decides what a token may do and how personal data looks to it.
type Role string

// Roles. Admin may do everything, including erasure; auditor reads
// personal data in clear (every such read is logged); analyst sees it
// masked; service appends and reads, and sees personal data only sealed.
const (
	RoleAdmin   Role = "admin"
	RoleAuditor Role = "auditor"
	RoleAnalyst Role = "analyst"
	RoleService Role = "service"
)

// Roles lists every role, in documentation order.
var Roles = []Role{RoleAdmin, RoleAuditor, RoleAnalyst, RoleService}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// SeesClear reports whether the role reads personal data in clear.
func (r Role) SeesClear() bool { return r == RoleAdmin || r == RoleAuditor }

// Principal is who made a request.
type Principal struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
}

// Anonymous is the principal of every request to a server that has no
// tokens: it listens on loopback only, and whoever reaches it is trusted.
var Anonymous = Principal{Name: "anonymous (no tokens configured)", Role: RoleAdmin}

// Errors callers test with errors.Is.
var (
	ErrBadRole   = errors.New("unknown role")
	ErrBadName   = errors.New("bad token name")
	ErrNameTaken = errors.New("token name already in use")
)

// TokenFile is the file, inside the data directory, that holds token hashes.
const TokenFile = "tokens.json"

// tokenPrefix makes tokens recognisable to secret scanners and people.
const tokenPrefix = "stele_"

type entry struct {
	Name    string    `json:"name"`
	Role    Role      `json:"role"`
	SHA256  string    `json:"sha256"`
	Created time.Time `json:"created"`
}

// Tokens is the token store of one data directory.
type Tokens struct {
	path string
	now  func() time.Time

	mu      sync.Mutex
	byHash  map[string]entry
	modTime time.Time
	size    int64
	checked time.Time
}

// Open reads the token file of a data directory; a missing file means no
// tokens.
func Open(dataDir string) (*Tokens, error) {
	t := &Tokens{path: filepath.Join(dataDir, TokenFile), now: time.Now, byHash: map[string]entry{}}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// reload rereads the file when it changed since the last read.
func (t *Tokens) reload() error {
	fi, err := os.Stat(t.path)
	if errors.Is(err, os.ErrNotExist) {
		t.byHash, t.modTime, t.size = map[string]entry{}, time.Time{}, 0
		return nil
	}
	if err != nil {
		return fmt.Errorf("read tokens: %w", err)
	}
	if fi.ModTime().Equal(t.modTime) && fi.Size() == t.size {
		return nil
	}
	data, err := os.ReadFile(t.path)
	if err != nil {
		return fmt.Errorf("read tokens: %w", err)
	}
	var list []entry
	if err := json.Unmarshal(data, &list); err != nil {
		return fmt.Errorf("read tokens: %s is not a token list: %w", t.path, err)
	}
	by := make(map[string]entry, len(list))
	for i, e := range list {
		if !e.Role.Valid() {
			return fmt.Errorf("read tokens: entry %d (%q): %w %q", i, e.Name, ErrBadRole, e.Role)
		}
		by[e.SHA256] = e
	}
	t.byHash, t.modTime, t.size = by, fi.ModTime(), fi.Size()
	return nil
}

// refresh rereads a changed file at most once a second, so tokens created
// while the server runs start working promptly without a stat per request.
func (t *Tokens) refresh() {
	if now := t.now(); now.Sub(t.checked) >= time.Second {
		t.checked = now
		// A file that became unreadable keeps the tokens already known; the
		// next change is picked up when it is readable again.
		_ = t.reload()
	}
}

// Empty reports whether no token exists: the server is then open to
// anyone who can reach it.
func (t *Tokens) Empty() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refresh()
	return len(t.byHash) == 0
}

// Authenticate returns the principal of a bearer token.
func (t *Tokens) Authenticate(token string) (Principal, bool) {
	sum := sha256.Sum256([]byte(token))
	h := hex.EncodeToString(sum[:])
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byHash[h]
	if !ok {
		t.refresh()
		e, ok = t.byHash[h]
	}
	if !ok {
		return Principal{}, false
	}
	return Principal{Name: e.Name, Role: e.Role}, true
}

// List returns every token's name, role and creation time (never hashes).
func (t *Tokens) List() []Principal {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refresh()
	out := make([]Principal, 0, len(t.byHash))
	for _, e := range t.byHash {
		out = append(out, Principal{Name: e.Name, Role: e.Role})
	}
	slices.SortFunc(out, func(a, b Principal) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// CheckNew checks the name and role of a token to be created, so a
// caller can refuse bad input before it touches the disk. Create checks
// the same, and that the name is free.
func CheckNew(name string, role Role) error {
	if !role.Valid() {
		return fmt.Errorf("role: %w %q (expected one of %v)", ErrBadRole, role, Roles)
	}
	if name == "" || len(name) > 128 || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("name: %w: must be 1 to 128 printable characters", ErrBadName)
	}
	return nil
}

// Create makes a new token and returns it; it is shown only this once.
func (t *Tokens) Create(name string, role Role) (string, error) {
	if err := CheckNew(name, role); err != nil {
		return "", err
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", fmt.Errorf("create token: %w", err)
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(token))

	t.mu.Lock()
	defer t.mu.Unlock()
	// Reread unconditionally: another process may have added tokens.
	t.modTime = time.Time{}
	if err := t.reload(); err != nil {
		return "", err
	}
	list := make([]entry, 0, len(t.byHash)+1)
	for _, e := range t.byHash {
		if e.Name == name {
			return "", fmt.Errorf("name: %w: %q", ErrNameTaken, name)
		}
		list = append(list, e)
	}
	list = append(list, entry{Name: name, Role: role, SHA256: hex.EncodeToString(sum[:]), Created: t.now().UTC()})
	slices.SortFunc(list, func(a, b entry) int { return strings.Compare(a.Name, b.Name) })
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return "", fmt.Errorf("create token: %w", err)
	}
	if err := atomicfile.Write(t.path, append(data, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("create token: %w", err)
	}
	t.modTime = time.Time{}
	if err := t.reload(); err != nil {
		return "", err
	}
	return token, nil
}
