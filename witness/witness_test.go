package witness_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele"
	"github.com/stele/stele/witness"
)

func fixedNow() time.Time { return time.Unix(1679315147, 0) }

func newCosigner(t *testing.T, name string) (*witness.Cosigner, string) {
	t.Helper()
	skey, vkey, err := witness.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := witness.NewCosigner(skey, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	if c.VerifierKey() != vkey {
		t.Fatalf("VerifierKey %q, GenerateKey gave %q", c.VerifierKey(), vkey)
	}
	return c, vkey
}

func newLog(t *testing.T, origin string) (note.Signer, note.Verifier, string) {
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
	return s, v, vkey
}

func TestCosignatureMessageAndVerify(t *testing.T) {
	c, vkey := newCosigner(t, "witness.example/w1")
	ls, lv, _ := newLog(t, "example.com/log")
	cp, err := stele.SignCheckpoint(ls, 5, bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(stele.CheckpointBody("example.com/log", 5, bytes.Repeat([]byte{7}, 32)))
	want := "cosignature/v1\ntime 1679315147\n" + string(body)
	if got := string(witness.CosignedMessage(body, 1679315147)); got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
	n, err := note.Open(cp.Note, note.VerifierList(lv))
	if err != nil {
		t.Fatal(err)
	}
	cosigned, err := note.Sign(n, ls, c)
	if err != nil {
		t.Fatal(err)
	}
	v, err := witness.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(cosigned, note.VerifierList(lv, v)); err != nil {
		t.Fatalf("open cosigned note: %v", err)
	}
	_, sigs, err := witness.SplitNote(cosigned)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, s := range sigs {
		if s.Name == c.Name() && s.Hash == c.KeyHash() {
			found = true
			ts, err := witness.CosignatureTime(s.Sig)
			if err != nil || !ts.Equal(fixedNow()) {
				t.Fatalf("cosignature time %v, %v; want %v", ts, err, fixedNow().UTC())
			}
			if !v.Verify(body, s.Sig) {
				t.Fatal("cosignature does not verify")
			}
			flipped := bytes.Clone(s.Sig)
			flipped[3] ^= 1 // the timestamp is signed too
			if v.Verify(body, flipped) {
				t.Fatal("cosignature with a changed timestamp verifies")
			}
			if v.Verify([]byte(strings.Replace(string(body), "5\n", "6\n", 1)), s.Sig) {
				t.Fatal("cosignature verifies over another checkpoint")
			}
		}
	}
	if !found {
		t.Fatal("no cosignature line in the note")
	}
}

func TestKeyErrors(t *testing.T) {
	_, logVkey, _ := note.GenerateKey(rand.Reader, "log")
	for _, tc := range []struct{ key, want string }{
		{"", "want <name>+<key hash>+<key>"},
		{logVkey, "not a cosignature/v1 Ed25519 key"},
		{"w+0000000+AQ==", "not 8 lowercase hex digits"},
		{"w+00000000+%%%", "not standard base64"},
	} {
		_, err := witness.NewVerifier(tc.key)
		if !errors.Is(err, witness.ErrKey) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewVerifier(%q) = %v, want ErrKey with %q", tc.key, err, tc.want)
		}
	}
	_, vkey := newCosigner(t, "w")
	wrongHash := "w+00000000" + vkey[len("w+00000000"):]
	if _, err := witness.NewVerifier(wrongHash); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("key with a wrong hash: %v", err)
	}
	if _, err := witness.NewCosigner("w+00000000+AQ==", nil); !errors.Is(err, witness.ErrKey) {
		t.Errorf("NewCosigner of a public key: %v", err)
	}
}

func TestAddCheckpointRoundTrip(t *testing.T) {
	req := &witness.AddCheckpoint{OldSize: 20, Proof: [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)}, Checkpoint: []byte("o\n21\nAAAA\n\n— o AAAA\n")}
	got, err := witness.ParseAddCheckpoint(req.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if got.OldSize != 20 || len(got.Proof) != 2 || !bytes.Equal(got.Proof[1], req.Proof[1]) || !bytes.Equal(got.Checkpoint, req.Checkpoint) {
		t.Fatalf("round trip: %+v", got)
	}
	hash := strings.Repeat("A", 43) + "="
	for _, tc := range []struct{ body, want string }{
		{"", "no old size line"},
		{"old 01\n\ncp", "leading zeros"},
		{"old -1\n\ncp", "leading zeros"},
		{"new 1\n\ncp", `not "old <size>"`},
		{"old 0\n" + hash + "\n\ncp", "proof must be empty"},
		{"old 3\nAAAA\n\ncp", "32-byte hash"},
		{"old 3\n" + hash + "\n", "no blank line"},
		{"old 3\n\n", "no checkpoint"},
		{"old 3\n" + strings.Repeat(hash+"\n", 64) + "\ncp", "more than 63"},
	} {
		_, err := witness.ParseAddCheckpoint([]byte(tc.body))
		if !errors.Is(err, witness.ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseAddCheckpoint(%q) = %v, want ErrMalformed with %q", tc.body, err, tc.want)
		}
	}
	if n, err := witness.ParseConflictSize([]byte("42\n")); err != nil || n != 42 {
		t.Errorf("ParseConflictSize: %d, %v", n, err)
	}
	if _, err := witness.ParseConflictSize([]byte("42")); !errors.Is(err, witness.ErrMalformed) {
		t.Errorf("ParseConflictSize without newline: %v", err)
	}
}

func TestPolicy(t *testing.T) {
	c1, v1 := newCosigner(t, "w1.example")
	c2, v2 := newCosigner(t, "w2.example")
	c3, v3 := newCosigner(t, "w3.example")
	ls, _, lvkey := newLog(t, "example.com/log")
	text := "# test policy\nlog " + lvkey + " https://log.example\n" +
		"witness w1 " + v1 + " https://w1.example\n" +
		"witness w2 " + v2 + "\n" +
		"witness w3 " + v3 + "\n" +
		"group two-of-three 2 w1 w2 w3\n" +
		"quorum two-of-three\n"
	p, err := witness.ParsePolicy([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Logs) != 1 || len(p.Witnesses) != 3 || p.Witnesses[0].URL != "https://w1.example" || p.Quorum() != "two-of-three" {
		t.Fatalf("parsed %+v", p)
	}
	cp, err := stele.SignCheckpoint(ls, 3, bytes.Repeat([]byte{9}, 32))
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(cp.Note, note.VerifierList(p.Logs[0].Verifier))
	if err != nil {
		t.Fatal(err)
	}
	one, _ := note.Sign(n, ls, c1)
	if _, err := p.Verify(one); !errors.Is(err, witness.ErrNotWitnessed) || !strings.Contains(err.Error(), "cosigned by 1 of 3 witnesses [w1]") {
		t.Fatalf("one cosignature: %v", err)
	}
	two, _ := note.Sign(n, ls, c1, c3)
	w, err := p.Verify(two)
	if err != nil {
		t.Fatalf("two cosignatures: %v", err)
	}
	if len(w.By) != 2 || w.By[0].Witness != "w1" || w.By[1].Witness != "w3" || w.By[0].Time != "2023-03-20T12:25:47Z" {
		t.Fatalf("witnessed by %+v", w.By)
	}
	// A cosignature of a known witness that does not verify is an error,
	// not a line to skip: it is someone forging a witness.
	forged := bytes.Replace(two, []byte("\n3\n"), []byte("\n4\n"), 1)
	if _, err := p.Verify(forged); !errors.Is(err, witness.ErrNotWitnessed) || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("forged: %v", err)
	}
	_ = c2
}

func TestPolicyErrors(t *testing.T) {
	_, v1 := newCosigner(t, "w1")
	for _, tc := range []struct{ text, want string }{
		{"", "no quorum line"},
		{"quorum w1\n", `line 1: quorum "w1" is not a witness or group defined above`},
		{"witness w1 " + v1 + "\nwitness w1 " + v1 + "\nquorum w1\n", `line 2: name "w1" is already defined`},
		{"witness a " + v1 + "\nwitness b " + v1 + "\nquorum a\n", "same key as witness a"},
		{"witness w1 " + v1 + "\ngroup g 2 w1\nquorum g\n", "threshold \"2\" must be all, any or a number from 1 to 1"},
		{"witness w1 " + v1 + "\ngroup g 01 w1\nquorum g\n", "threshold"},
		{"witness w1 " + v1 + "\ngroup g any w1 w2\nquorum g\n", `member "w2" is not a witness or group defined above`},
		{"witness w1 " + v1 + "\ngroup g any w1 w1\nquorum g\n", "listed twice"},
		{"witness w1 " + v1 + "\nquorum w1\nquorum w1\n", "quorum defined twice"},
		{"witness w1 nokey\nquorum none\n", "line 1: witness w1"},
		{"log nokey\nquorum none\n", "line 1: log key"},
		{"sign w1\n", `unknown keyword "sign"`},
	} {
		_, err := witness.ParsePolicy([]byte(tc.text))
		if !errors.Is(err, witness.ErrPolicy) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePolicy(%q) = %v, want ErrPolicy with %q", tc.text, err, tc.want)
		}
	}
	p, err := witness.ParsePolicy([]byte("witness w1 " + v1 + "\ngroup inner all w1\ngroup outer any inner\nquorum outer\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Satisfied(map[string]bool{}) || !p.Satisfied(map[string]bool{"w1": true}) {
		t.Fatal("nested groups evaluated wrongly")
	}
	none, err := witness.ParsePolicy([]byte("quorum none\n"))
	if err != nil || !none.Satisfied(nil) {
		t.Fatalf("quorum none: %v", err)
	}
}
