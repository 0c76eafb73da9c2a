package witness_test

import (
	"bytes"
	"testing"

	"github.com/stele/stele/witness"
)

func FuzzParseAddCheckpoint(f *testing.F) {
	f.Add([]byte("old 0\n\no\n1\nAAAA\n\n— o AAAA\n"))
	f.Add((&witness.AddCheckpoint{OldSize: 3, Proof: [][]byte{make([]byte, 32)}, Checkpoint: []byte("x")}).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := witness.ParseAddCheckpoint(b)
		if err != nil {
			return
		}
		// What parses re-encodes to the same bytes: one meaning per body.
		if got := r.Marshal(); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded %q, parsed from %q", got, b)
		}
	})
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte("witness w1 w1+00000000+BAAA\ngroup g any w1\nquorum g\n"))
	f.Add([]byte("quorum none\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := witness.ParsePolicy(b)
		if err != nil {
			return
		}
		// Evaluating any set must terminate and "none" needs nobody.
		all := map[string]bool{}
		for _, w := range p.Witnesses {
			all[w.Name] = true
		}
		if p.Quorum() == "none" && !p.Satisfied(nil) {
			t.Fatal("quorum none not satisfied")
		}
		if !p.Satisfied(all) {
			t.Fatalf("quorum %q not satisfied by every witness", p.Quorum())
		}
	})
}

func FuzzParseSignatureLines(f *testing.F) {
	f.Add([]byte("— w1 AAAAAAAAAAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sigs, err := witness.ParseSignatureLines(b)
		if err != nil {
			return
		}
		var joined []byte
		for _, s := range sigs {
			joined = append(joined, s.Line...)
		}
		if !bytes.Equal(joined, b) {
			t.Fatalf("lines %q do not rebuild %q", joined, b)
		}
	})
}
