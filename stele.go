// Package stele holds the words every part of Stele shares and no
// implementation owns: the outcome of an append, the overload pushback, and
// the signed checkpoint with its one strict parser. Sources, the privacy
// layer and the readers of the log import these, never the store (package
// logstore), so that a source or a reader can be written, tested and
// replaced without the store; tessera keeps its ErrPushback in its root
// package for the same reason.
//
// Nothing here does I/O. The checkpoint format is C2SP tlog-checkpoint:
//
//	<origin>\n
//	<tree size, decimal, no sign or leading zeros>\n
//	<root hash, standard base64 of 32 bytes>\n
//	[<extension line>\n ...]
//
// signed as a C2SP signed note (golang.org/x/mod/sumdb/note), Ed25519.
package stele

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Appended is the outcome of appending one record.
type Appended struct {
	Seq uint64 `json:"seq"`
	ID  string `json:"id"`
	// Duplicate is true when a record with this id was already stored; Seq
	// is then the stored record's.
	Duplicate bool `json:"duplicate,omitempty"`
}

// ErrOverloaded is the pushback of a log whose append queue is full: nothing
// of the refused call was appended, and the caller retries after a short
// wait (the API answers 503 with Retry-After, a source backs off).
var ErrOverloaded = errors.New("log overloaded: append queue full")

// ErrUnavailable is the refusal of a clustered log that cannot sequence
// records now: its NATS servers have no quorum, or no writer holds the
// lease. Nothing acknowledged is lost; whether the refused records were
// stored is unknown, and resubmitting them is safe (their ids are
// deduplicated). The API answers 503 with Retry-After.
var ErrUnavailable = errors.New("log unavailable: the cluster cannot sequence records now")

// RecordError is the refusal of one record of an append batch, by its index
// in the batch; nothing of the batch was appended. Err says why (it wraps
// *record.FieldError when the record itself is unacceptable).
type RecordError struct {
	Index int
	Err   error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("record %d of the batch: %v", e.Index, e.Err)
}

func (e *RecordError) Unwrap() error { return e.Err }

// Checkpoint is a signed statement of a log's size and root hash.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
	// Note is the signed note exactly as issued (C2SP tlog-checkpoint).
	Note []byte
}

// Errors of OpenCheckpoint. Each is wrapped by ErrBadCheckpoint too, so a
// caller that only needs "not a valid checkpoint" tests that one.
var (
	// ErrBadCheckpoint: the note is not a valid checkpoint of this log.
	ErrBadCheckpoint = errors.New("bad checkpoint")
	// ErrCheckpointSignature: the note carries no valid signature by the
	// verifier key, or its origin is not the key's name.
	ErrCheckpointSignature = errors.New("checkpoint signature")
	// ErrCheckpointMalformed: the note is signed but its body is not a
	// C2SP tlog-checkpoint, or it is not a signed note at all.
	ErrCheckpointMalformed = errors.New("malformed checkpoint")
)

type checkpointError struct {
	kind error
	msg  string
}

func (e *checkpointError) Error() string { return e.msg }

func (e *checkpointError) Is(target error) bool {
	return target == ErrBadCheckpoint || target == e.kind
}

func badCheckpoint(kind error, format string, args ...any) error {
	return &checkpointError{kind: kind, msg: "bad checkpoint: " + fmt.Sprintf(format, args...)}
}

// CheckpointBody is the text of a checkpoint before it is signed.
func CheckpointBody(origin string, size uint64, root []byte) string {
	return origin + "\n" + strconv.FormatUint(size, 10) + "\n" + base64.StdEncoding.EncodeToString(root) + "\n"
}

// SignCheckpoint signs the checkpoint of a tree of size with root, under the
// signer's name as origin.
func SignCheckpoint(s note.Signer, size uint64, root []byte) (*Checkpoint, error) {
	msg, err := note.Sign(&note.Note{Text: CheckpointBody(s.Name(), size, root)}, s)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return &Checkpoint{Origin: s.Name(), Size: size, Root: bytes.Clone(root), Note: msg}, nil
}

// OpenCheckpoint verifies a signed checkpoint note against v and parses its
// body strictly: the origin must be the key's name, the size a decimal
// number without sign or leading zeros, the root standard base64 of 32
// bytes, every line ended by a newline, and extension lines, which are
// allowed and ignored, non-empty. Every error wraps ErrBadCheckpoint and one
// of ErrCheckpointSignature or ErrCheckpointMalformed.
func OpenCheckpoint(msg []byte, v note.Verifier) (*Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		if errors.As(err, &unverified) || errors.As(err, &invalid) {
			return nil, badCheckpoint(ErrCheckpointSignature, "no valid signature by key %s+%08x: %v", v.Name(), v.KeyHash(), err)
		}
		return nil, badCheckpoint(ErrCheckpointMalformed, "not a signed note: %v", err)
	}
	cp, err := parseCheckpointBody(n.Text)
	if err != nil {
		return nil, err
	}
	if cp.Origin != v.Name() {
		return nil, badCheckpoint(ErrCheckpointSignature, "origin %q is not the verifier key's name %q", cp.Origin, v.Name())
	}
	cp.Note = bytes.Clone(msg)
	return cp, nil
}

func parseCheckpointBody(body string) (*Checkpoint, error) {
	bad := func(format string, args ...any) error {
		return badCheckpoint(ErrCheckpointMalformed, format, args...)
	}
	if !strings.HasSuffix(body, "\n") {
		return nil, bad("body does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if len(lines) < 3 {
		return nil, bad("%d lines, want at least 3 (origin, size, root hash)", len(lines))
	}
	origin, sizeText, rootText := lines[0], lines[1], lines[2]
	if origin == "" {
		return nil, bad("empty origin line")
	}
	if sizeText == "" || (len(sizeText) > 1 && sizeText[0] == '0') || strings.IndexFunc(sizeText, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return nil, bad("tree size %q is not a decimal number without sign or leading zeros", sizeText)
	}
	size, err := strconv.ParseUint(sizeText, 10, 64)
	if err != nil {
		return nil, bad("tree size %q: %v", sizeText, err)
	}
	root, err := base64.StdEncoding.Strict().DecodeString(rootText)
	if err != nil {
		return nil, bad("root hash %q is not standard base64: %v", rootText, err)
	}
	if len(root) != 32 {
		return nil, bad("root hash is %d bytes, want 32", len(root))
	}
	for i, l := range lines[3:] {
		if l == "" {
			return nil, bad("empty extension line %d", i+4)
		}
	}
	return &Checkpoint{Origin: origin, Size: size, Root: root}, nil
}
