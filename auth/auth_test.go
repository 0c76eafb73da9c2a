package auth

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCreateAuthenticateAndReopen(t *testing.T) {
	dir := t.TempDir()
	tok, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Empty() {
		t.Fatal("a new data directory has tokens")
	}
	secret, err := tok.Create("ci-bot", RoleService)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "stele_") || len(secret) < 40 {
		t.Fatalf("token %q lacks the prefix or is short", secret)
	}
	p, ok := tok.Authenticate(secret)
	if !ok || p.Name != "ci-bot" || p.Role != RoleService {
		t.Fatalf("Authenticate = %+v, %v", p, ok)
	}
	if _, ok := tok.Authenticate(secret + "x"); ok {
		t.Fatal("a wrong token authenticated")
	}
	if _, ok := tok.Authenticate(""); ok {
		t.Fatal("the empty token authenticated")
	}
	data, err := os.ReadFile(filepath.Join(dir, TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(secret)) || bytes.Contains(data, []byte(strings.TrimPrefix(secret, "stele_"))) {
		t.Fatal("the token file holds the token itself, not only its hash")
	}
	fi, _ := os.Stat(filepath.Join(dir, TokenFile))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := again.Authenticate(secret); !ok || p.Role != RoleService {
		t.Fatal("token lost across reopen")
	}
}

func TestTokensCreatedElsewhereArePickedUp(t *testing.T) {
	dir := t.TempDir()
	server, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	server.now = func() time.Time { return clock }
	if !server.Empty() {
		t.Fatal("not empty")
	}
	cli, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := cli.Create("alice", RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(2 * time.Second)
	if p, ok := server.Authenticate(secret); !ok || p.Role != RoleAuditor {
		t.Fatalf("server did not pick up a token created by another process: %+v %v", p, ok)
	}
	if server.Empty() {
		t.Fatal("server still thinks it has no tokens")
	}
}

func TestCreateRejectsBadInput(t *testing.T) {
	tok, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Create("x", Role("root")); !errors.Is(err, ErrBadRole) || !strings.Contains(err.Error(), "role") {
		t.Fatalf("bad role: %v", err)
	}
	if _, err := tok.Create("", RoleAdmin); !errors.Is(err, ErrBadName) || !strings.Contains(err.Error(), "name") {
		t.Fatalf("empty name: %v", err)
	}
	if _, err := tok.Create("a\nb", RoleAdmin); !errors.Is(err, ErrBadName) {
		t.Fatalf("control character in name: %v", err)
	}
	if _, err := tok.Create("ops", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Create("ops", RoleAnalyst); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("duplicate name: %v", err)
	}
	if got := tok.List(); len(got) != 1 || got[0].Name != "ops" || got[0].Role != RoleAdmin {
		t.Fatalf("List = %+v", got)
	}
}

func TestCorruptTokenFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, TokenFile), []byte(`[{"name":"x","role":"god","sha256":"00"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrBadRole) {
		t.Fatalf("Open with an unknown role: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, TokenFile), []byte(`{`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "not a token list") {
		t.Fatalf("Open with broken JSON: %v", err)
	}
}
