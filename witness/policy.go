package witness

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Policy is a C2SP tlog-policy: the logs and witnesses a party trusts, and
// the quorum of witnesses whose cosignatures make a checkpoint witnessed.
//
//	log <vkey> [<url>]
//	witness <name> <vkey> [<url>]
//	group <name> <k|all|any> <member> ...
//	quorum <witness or group name | none>
//
// Lines starting with # and blank lines are ignored. A member is a witness
// or a group defined on an earlier line, so groups cannot form cycles.
type Policy struct {
	Logs      []Log
	Witnesses []Member
	groups    map[string]group
	witnesses map[string]*Member
	quorum    string
}

// Log is a log a policy names.
type Log struct {
	Verifier    note.Verifier
	VerifierKey string
	URL         string
}

// Member is a witness a policy names.
type Member struct {
	Name        string
	Verifier    *Verifier
	VerifierKey string
	// URL is the witness's submission prefix; add-checkpoint is under it.
	URL string
}

type group struct {
	k       int
	members []string
}

// ErrPolicy: the policy text is not a valid tlog-policy.
var ErrPolicy = errors.New("bad witness policy")

// ErrNotWitnessed: a checkpoint lacks the cosignatures its policy asks for.
var ErrNotWitnessed = errors.New("checkpoint not witnessed by the policy's quorum")

// maxPolicySize bounds what ParsePolicy reads: a policy is a short list.
const maxPolicySize = 1 << 20

// ParsePolicy parses a tlog-policy text. Errors name the line and why.
func ParsePolicy(text []byte) (*Policy, error) {
	if len(text) > maxPolicySize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrPolicy, len(text), maxPolicySize)
	}
	p := &Policy{groups: map[string]group{}, witnesses: map[string]*Member{}}
	quorumSet := false
	for i, line := range strings.Split(string(text), "\n") {
		n := i + 1
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: line %d: %s", ErrPolicy, n, fmt.Sprintf(format, args...))
		}
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		f := strings.Fields(line)
		defined := func(name string) bool {
			_, g := p.groups[name]
			_, w := p.witnesses[name]
			return g || w
		}
		switch f[0] {
		case "log":
			if len(f) < 2 || len(f) > 3 {
				return nil, bad("log wants <vkey> [<url>], got %d fields", len(f)-1)
			}
			v, err := note.NewVerifier(f[1])
			if err != nil {
				return nil, bad("log key: %v", err)
			}
			l := Log{Verifier: v, VerifierKey: f[1]}
			if len(f) == 3 {
				l.URL = f[2]
			}
			p.Logs = append(p.Logs, l)
		case "witness":
			if len(f) < 3 || len(f) > 4 {
				return nil, bad("witness wants <name> <vkey> [<url>], got %d fields", len(f)-1)
			}
			if f[1] == "none" || defined(f[1]) {
				return nil, bad("name %q is already defined (or reserved)", f[1])
			}
			v, err := NewVerifier(f[2])
			if err != nil {
				return nil, bad("witness %s: %v", f[1], err)
			}
			m := Member{Name: f[1], Verifier: v, VerifierKey: f[2]}
			if len(f) == 4 {
				m.URL = f[3]
			}
			for _, o := range p.Witnesses {
				if o.Verifier.name == v.name && o.Verifier.hash == v.hash {
					return nil, bad("witness %s has the same key as witness %s", f[1], o.Name)
				}
			}
			p.Witnesses = append(p.Witnesses, m)
			p.witnesses[m.Name] = &p.Witnesses[len(p.Witnesses)-1]
		case "group":
			if len(f) < 4 {
				return nil, bad("group wants <name> <k|all|any> <member>..., got %d fields", len(f)-1)
			}
			if f[1] == "none" || defined(f[1]) {
				return nil, bad("name %q is already defined (or reserved)", f[1])
			}
			members := f[3:]
			for j, m := range members {
				if !defined(m) {
					return nil, bad("group %s: member %q is not a witness or group defined above", f[1], m)
				}
				if slices.Contains(members[:j], m) {
					return nil, bad("group %s: member %q listed twice", f[1], m)
				}
			}
			var k int
			switch f[2] {
			case "all":
				k = len(members)
			case "any":
				k = 1
			default:
				v, err := strconv.Atoi(f[2])
				if err != nil || v < 1 || v > len(members) || strconv.Itoa(v) != f[2] {
					return nil, bad("group %s: threshold %q must be all, any or a number from 1 to %d", f[1], f[2], len(members))
				}
				k = v
			}
			p.groups[f[1]] = group{k: k, members: members}
		case "quorum":
			if len(f) != 2 {
				return nil, bad("quorum wants one name, got %d fields", len(f)-1)
			}
			if quorumSet {
				return nil, bad("quorum defined twice")
			}
			if f[1] != "none" && !defined(f[1]) {
				return nil, bad("quorum %q is not a witness or group defined above", f[1])
			}
			p.quorum, quorumSet = f[1], true
		default:
			return nil, bad("unknown keyword %q (want log, witness, group or quorum)", f[0])
		}
	}
	if !quorumSet {
		return nil, fmt.Errorf("%w: no quorum line", ErrPolicy)
	}
	// Witnesses was appended to after pointers were taken; take them again.
	for i := range p.Witnesses {
		p.witnesses[p.Witnesses[i].Name] = &p.Witnesses[i]
	}
	return p, nil
}

// Quorum is the name the quorum line gives ("none" when no cosignature is
// required).
func (p *Policy) Quorum() string { return p.quorum }

// Satisfied reports whether the witnesses named by signed meet the quorum.
func (p *Policy) Satisfied(signed map[string]bool) bool {
	if p.quorum == "none" {
		return true
	}
	return p.satisfied(p.quorum, signed)
}

func (p *Policy) satisfied(name string, signed map[string]bool) bool {
	if _, ok := p.witnesses[name]; ok {
		return signed[name]
	}
	g := p.groups[name]
	n := 0
	for _, m := range g.members {
		if p.satisfied(m, signed) {
			n++
		}
	}
	return n >= g.k
}

// Witnessed is a checkpoint's cosignatures that verified under a policy.
type Witnessed struct {
	// By lists the witnesses whose cosignature verified, in policy order,
	// with the time each says it signed.
	By []Cosigned
}

// Cosigned is one witness's verified cosignature.
type Cosigned struct {
	Witness string
	Time    string // RFC 3339, UTC
}

// Verify checks the cosignatures on a signed checkpoint note against the
// policy's witnesses, ignoring lines of unknown keys, and fails wrapping
// ErrNotWitnessed when they do not meet the quorum. The log's own signature
// is the caller's to check (stele.OpenCheckpoint); a cosignature line that
// names a known witness key but does not verify is an error, not ignored.
func (p *Policy) Verify(msg []byte) (*Witnessed, error) {
	body, sigs, err := SplitNote(msg)
	if err != nil {
		return nil, err
	}
	signed := map[string]bool{}
	times := map[string]string{}
	for _, s := range sigs {
		for _, w := range p.Witnesses {
			if w.Verifier.name != s.Name || w.Verifier.hash != s.Hash {
				continue
			}
			if !w.Verifier.Verify(body, s.Sig) {
				return nil, fmt.Errorf("%w: cosignature of witness %s (%s+%08x) does not verify", ErrNotWitnessed, w.Name, s.Name, s.Hash)
			}
			t, _ := CosignatureTime(s.Sig)
			signed[w.Name] = true
			times[w.Name] = t.Format("2006-01-02T15:04:05Z")
		}
	}
	out := &Witnessed{}
	for _, w := range p.Witnesses {
		if signed[w.Name] {
			out.By = append(out.By, Cosigned{Witness: w.Name, Time: times[w.Name]})
		}
	}
	if !p.Satisfied(signed) {
		names := make([]string, 0, len(out.By))
		for _, c := range out.By {
			names = append(names, c.Witness)
		}
		return out, fmt.Errorf("%w: quorum %q not met; cosigned by %d of %d witnesses [%s]", ErrNotWitnessed, p.quorum, len(out.By), len(p.Witnesses), strings.Join(names, " "))
	}
	return out, nil
}

// Signature is one parsed signature line of a note.
type Signature struct {
	Name string
	Hash uint32
	Sig  []byte // after the 4-byte key hash
	Line []byte // the whole line with its newline
}

// maxSignatures bounds the signature lines read, as note.Open does.
const maxSignatures = 100

// SplitNote splits a signed note into its body (with the final newline)
// and its signature lines, strictly: one blank line between them, every
// signature line "— <name> <base64>\n".
func SplitNote(msg []byte) (body []byte, sigs []Signature, err error) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return nil, nil, fmt.Errorf("%w: not a signed note: no blank line before the signatures", ErrMalformed)
	}
	body = msg[:i+1]
	sigs, err = ParseSignatureLines(msg[i+2:])
	if err != nil {
		return nil, nil, err
	}
	if len(sigs) == 0 {
		return nil, nil, fmt.Errorf("%w: signed note has no signature lines", ErrMalformed)
	}
	return body, sigs, nil
}

// ParseSignatureLines parses note signature lines (an add-checkpoint
// response body is one or more).
func ParseSignatureLines(b []byte) ([]Signature, error) {
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, fmt.Errorf("%w: signature lines must each end with a newline", ErrMalformed)
	}
	var sigs []Signature
	for line := range bytes.SplitAfterSeq(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if len(sigs) == maxSignatures {
			return nil, fmt.Errorf("%w: more than %d signature lines", ErrMalformed, maxSignatures)
		}
		text, ok := strings.CutPrefix(strings.TrimSuffix(string(line), "\n"), "— ")
		if !ok {
			return nil, fmt.Errorf("%w: signature line %d does not start with \"— \"", ErrMalformed, len(sigs)+1)
		}
		name, b64, ok := strings.Cut(text, " ")
		if !ok || !validKeyName(name) || strings.Contains(b64, " ") {
			return nil, fmt.Errorf("%w: signature line %d is not \"— <name> <base64>\"", ErrMalformed, len(sigs)+1)
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil || len(raw) < 5 {
			return nil, fmt.Errorf("%w: signature line %d of %s: not base64 of a key hash and a signature", ErrMalformed, len(sigs)+1, name)
		}
		sigs = append(sigs, Signature{Name: name, Hash: binary.BigEndian.Uint32(raw), Sig: raw[4:], Line: bytes.Clone(line)})
	}
	return sigs, nil
}
