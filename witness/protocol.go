package witness

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrMalformed: a request, response or note does not follow the wire
// format (an add-checkpoint 400).
var ErrMalformed = errors.New("malformed witness message")

// MaxProofLines is the most consistency proof lines a request may carry
// (C2SP tlog-witness): a proof of a tree of 2^63 leaves fits.
const MaxProofLines = 63

// MaxRequestSize bounds an add-checkpoint body: the old size, 63 proof
// lines and a checkpoint with a few signatures fit in far less.
const MaxRequestSize = 64 << 10

// ContentTypeSize is the content type of a 409's body, the witness's size.
const ContentTypeSize = "text/x.tlog.size"

// AddCheckpoint is the body of POST <prefix>/add-checkpoint:
//
//	old <size>\n
//	<base64 proof hash>\n ...
//	\n
//	<signed checkpoint note>
type AddCheckpoint struct {
	OldSize    uint64
	Proof      [][]byte
	Checkpoint []byte
}

// Marshal encodes the request body.
func (r *AddCheckpoint) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString("old ")
	b.WriteString(strconv.FormatUint(r.OldSize, 10))
	b.WriteByte('\n')
	for _, h := range r.Proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(r.Checkpoint)
	return b.Bytes()
}

// ParseAddCheckpoint decodes a request body strictly: "old" and a decimal
// without leading zeros, at most 63 proof lines of 32-byte hashes in
// standard base64, none when old is 0, a blank line, then the note. The
// note's signatures are the witness's to check.
func ParseAddCheckpoint(body []byte) (*AddCheckpoint, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: add-checkpoint: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	if len(body) > MaxRequestSize {
		return nil, bad("%d bytes, at most %d", len(body), MaxRequestSize)
	}
	line, rest, ok := bytes.Cut(body, []byte("\n"))
	if !ok {
		return nil, bad("no old size line")
	}
	sizeText, ok := strings.CutPrefix(string(line), "old ")
	if !ok {
		return nil, bad("first line %q is not \"old <size>\"", truncate(line))
	}
	old, err := parseSize(sizeText)
	if err != nil {
		return nil, bad("old size: %v", err)
	}
	r := &AddCheckpoint{OldSize: old}
	for {
		line, next, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			return nil, bad("no blank line before the checkpoint")
		}
		rest = next
		if len(line) == 0 {
			break
		}
		if len(r.Proof) == MaxProofLines {
			return nil, bad("more than %d consistency proof lines", MaxProofLines)
		}
		h, err := base64.StdEncoding.Strict().DecodeString(string(line))
		if err != nil || len(h) != 32 {
			return nil, bad("consistency proof line %d is not standard base64 of a 32-byte hash", len(r.Proof)+1)
		}
		r.Proof = append(r.Proof, h)
	}
	if old == 0 && len(r.Proof) > 0 {
		return nil, bad("old size 0 with %d proof lines; the proof must be empty", len(r.Proof))
	}
	if len(rest) == 0 {
		return nil, bad("no checkpoint after the blank line")
	}
	r.Checkpoint = rest
	return r, nil
}

// ParseConflictSize reads a 409 body: the witness's latest cosigned size.
func ParseConflictSize(body []byte) (uint64, error) {
	text, ok := strings.CutSuffix(string(body), "\n")
	if !ok {
		return 0, fmt.Errorf("%w: 409 body %q is not a size ended by a newline", ErrMalformed, truncate(body))
	}
	n, err := parseSize(text)
	if err != nil {
		return 0, fmt.Errorf("%w: 409 body: %w", ErrMalformed, err)
	}
	return n, nil
}

func parseSize(s string) (uint64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a decimal number without sign or leading zeros", truncateString(s))
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", truncateString(s), err)
	}
	return n, nil
}

func truncate(b []byte) string { return truncateString(string(b)) }

func truncateString(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
