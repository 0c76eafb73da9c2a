package keystore

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnvMasterRejectsBadInputWithoutEchoingIt(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"empty", "  ", "empty"},
		{"not base64", "this is !!! not base64 secretish", "not valid base64"},
		{"16 bytes", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16)), "decodes to 16 bytes, want 32"},
		{"33 bytes", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 33)), "decodes to 33 bytes, want 32"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := EnvMaster(c.in)
			if err == nil {
				t.Fatal("accepted bad master key")
			}
			if !strings.Contains(err.Error(), "STELE_MASTER_KEY") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name the variable and %q", err, c.want)
			}
			if strings.TrimSpace(c.in) != "" && strings.Contains(err.Error(), strings.TrimSpace(c.in)) {
				t.Fatalf("error echoes the input: %q", err)
			}
		})
	}
}

func TestEnvMasterAcceptsStdAndRawBase64SameID(t *testing.T) {
	raw := bytes.Repeat([]byte{0xab}, 32)
	a, err := EnvMaster(base64.StdEncoding.EncodeToString(raw) + "\n")
	if err != nil {
		t.Fatal(err)
	}
	b, err := EnvMaster(base64.RawURLEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	if a.ID() != b.ID() || !strings.HasPrefix(a.ID(), "local:") {
		t.Fatalf("ids %q %q", a.ID(), b.ID())
	}
	other, _ := EnvMaster(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)))
	if other.ID() == a.ID() {
		t.Fatal("different keys share an id")
	}
	if strings.Contains(a.ID(), base64.StdEncoding.EncodeToString(raw)[:8]) {
		t.Fatal("id shows key material")
	}
}

func TestLocalMasterWrapUnwrapAndWrongKey(t *testing.T) {
	ctx := context.Background()
	m1 := testMaster(t, 1)
	m2 := testMaster(t, 2)
	pt := []byte("thirty-two bytes of key material")
	w, err := m1.Wrap(ctx, pt)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(w, pt) {
		t.Fatal("wrapping contains the plaintext")
	}
	got, err := m1.Unwrap(ctx, w)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("unwrap: %v %q", err, got)
	}
	if _, err := m2.Unwrap(ctx, w); !errors.Is(err, ErrWrongMaster) {
		t.Fatalf("wrong key: %v", err)
	}
	w[len(w)-1] ^= 1
	if _, err := m1.Unwrap(ctx, w); err == nil {
		t.Fatal("tampered wrapping accepted")
	}
	if _, err := m1.Unwrap(ctx, w[:5]); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Fatalf("short wrapping: %v", err)
	}
}

func TestFileMasterCreatesPrivateFileAndReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "master.key")
	m1, err := FileMaster(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o", st.Mode().Perm())
	}
	m2, err := FileMaster(path)
	if err != nil {
		t.Fatal(err)
	}
	if m1.ID() != m2.ID() {
		t.Fatalf("reload changed id: %s %s", m1.ID(), m2.ID())
	}
	// The file's base64 text is a valid STELE_MASTER_KEY: same key, same id.
	text, _ := os.ReadFile(path)
	m3, err := EnvMaster(string(text))
	if err != nil || m3.ID() != m1.ID() {
		t.Fatalf("env from file text: %v %s", err, m3.ID())
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := FileMaster(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key file accepted: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(bad, []byte("short"), 0o600)
	if _, err := FileMaster(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("bad key file: %v", err)
	}
}

func testMaster(t testing.TB, seed byte) MasterKey {
	t.Helper()
	m, err := EnvMaster(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{seed}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
