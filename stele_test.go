package stele_test

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
)

const origin = "stele.test/log"

func keys(t *testing.T) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func TestCheckpointRoundTrip(t *testing.T) {
	s, v := keys(t)
	root := make([]byte, 32)
	root[0] = 7
	cp, err := stele.SignCheckpoint(s, 12345, root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := stele.OpenCheckpoint(cp.Note, v)
	if err != nil {
		t.Fatalf("OpenCheckpoint of a signed checkpoint: %v", err)
	}
	if got.Origin != origin || got.Size != 12345 || got.Root[0] != 7 || string(got.Note) != string(cp.Note) {
		t.Fatalf("round trip gave %+v, want %+v", got, cp)
	}
}

func TestOpenCheckpointStrict(t *testing.T) {
	s, v := keys(t)
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	root := b64(make([]byte, 32))
	for name, tc := range map[string]struct {
		body string
		want string
	}{
		"two lines":        {origin + "\n5\n", "2 lines"},
		"leading zero":     {origin + "\n05\n" + root + "\n", `"05"`},
		"negative":         {origin + "\n-5\n" + root + "\n", `"-5"`},
		"plus sign":        {origin + "\n+5\n" + root + "\n", `"+5"`},
		"not a number":     {origin + "\nfive\n" + root + "\n", `"five"`},
		"overflow":         {origin + "\n18446744073709551616\n" + root + "\n", "18446744073709551616"},
		"root not base64":  {origin + "\n5\n!!!!\n", "base64"},
		"root too short":   {origin + "\n5\n" + b64(make([]byte, 31)) + "\n", "31 bytes"},
		"root url base64":  {origin + "\n5\n" + strings.Repeat("_", 43) + "=\n", "base64"},
		"empty size line":  {origin + "\n\n" + root + "\n", `""`},
		"empty extension":  {origin + "\n5\n" + root + "\n\n", "extension line 4"},
		"size with spaces": {origin + "\n 5\n" + root + "\n", `" 5"`},
	} {
		t.Run(name, func(t *testing.T) {
			msg, err := note.Sign(&note.Note{Text: tc.body}, s)
			if err != nil {
				t.Skipf("note refuses this text itself: %v", err)
			}
			_, err = stele.OpenCheckpoint(msg, v)
			if !errors.Is(err, stele.ErrBadCheckpoint) || !errors.Is(err, stele.ErrCheckpointMalformed) {
				t.Fatalf("error = %v, want ErrBadCheckpoint and ErrCheckpointMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
		})
	}
	// Extension lines after the root are allowed by C2SP tlog-checkpoint.
	msg, err := note.Sign(&note.Note{Text: origin + "\n5\n" + root + "\nextension line\n"}, s)
	if err != nil {
		t.Fatal(err)
	}
	if cp, err := stele.OpenCheckpoint(msg, v); err != nil || cp.Size != 5 {
		t.Fatalf("extension line: %+v, %v", cp, err)
	}
}

func TestOpenCheckpointSignature(t *testing.T) {
	s, _ := keys(t)
	_, other := keys(t)
	cp, err := stele.SignCheckpoint(s, 1, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stele.OpenCheckpoint(cp.Note, other); !errors.Is(err, stele.ErrCheckpointSignature) {
		t.Fatalf("checkpoint under another key: %v, want ErrCheckpointSignature", err)
	}
	if _, err := stele.OpenCheckpoint([]byte("<html>maintenance</html>"), other); !errors.Is(err, stele.ErrCheckpointMalformed) {
		t.Fatalf("not a note: %v, want ErrCheckpointMalformed", err)
	}
}

// FuzzOpenCheckpoint feeds arbitrary notes to the one checkpoint parser the
// server, the verifiers and the auditor share: it never panics, and what it
// accepts is exactly what signing the parsed values gives back.
func FuzzOpenCheckpoint(f *testing.F) {
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		f.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	good, err := stele.SignCheckpoint(s, 42, make([]byte, 32))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good.Note, false)
	f.Add([]byte(origin+"\n42\n"+base64.StdEncoding.EncodeToString(make([]byte, 32))+"\next\n"), true)
	f.Add([]byte(origin+"\n042\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, signBody bool) {
		msg := data
		if signBody {
			signed, err := note.Sign(&note.Note{Text: string(data)}, s)
			if err != nil {
				return
			}
			msg = signed
		}
		cp, err := stele.OpenCheckpoint(msg, v)
		if err != nil {
			if !errors.Is(err, stele.ErrBadCheckpoint) {
				t.Fatalf("error %v does not wrap ErrBadCheckpoint", err)
			}
			return
		}
		again, err := stele.SignCheckpoint(s, cp.Size, cp.Root)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := note.Open(msg, note.VerifierList(v))
		if !strings.HasPrefix(n.Text, stele.CheckpointBody(cp.Origin, cp.Size, cp.Root)) || again.Size != cp.Size {
			t.Fatalf("accepted %q, which is not the checkpoint of size %d it parsed to", n.Text, cp.Size)
		}
	})
}
