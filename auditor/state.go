package auditor

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/stele/stele/internal/atomicfile"
)

// stateFile is the on-disk form of the last verified checkpoint:
//
//	{
//	  "origin": "stele.example.com/log",
//	  "size": 1234,
//	  "root_hash": "<base64 std>",
//	  "checkpoint": "<signed note text>",
//	  "checked_at": "2026-03-31T12:00:00Z"
//	}
//
// The signed checkpoint is kept so the file is evidence: with it, a later
// rollback or fork is proved by two notes the log itself signed.
type stateFile struct {
	Origin     string    `json:"origin"`
	Size       uint64    `json:"size"`
	RootHash   string    `json:"root_hash"`
	Checkpoint string    `json:"checkpoint,omitempty"`
	CheckedAt  time.Time `json:"checked_at"`
}

type state struct {
	checkpoint Checkpoint
	checkedAt  time.Time
}

// loadState reads the state file at path. A missing file is not an error (a
// first run) and yields nil. A file that exists but cannot be trusted is an
// ErrState: it is never silently replaced.
func loadState(path string, v note.Verifier) (*state, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: %s (remove or fix it to start over)", ErrState, path, fmt.Sprintf(format, args...))
	}
	var sf stateFile
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&sf); err != nil {
		return nil, bad("not valid state JSON: %v", err)
	}
	if sf.Origin != v.Name() {
		return nil, bad("it is for log %q, but the verifier key is for %q", sf.Origin, v.Name())
	}
	root, err := base64.StdEncoding.Strict().DecodeString(sf.RootHash)
	if err != nil || len(root) != rfc6962.DefaultHasher.Size() {
		return nil, bad("root_hash %q is not a base64 %d-byte hash", sf.RootHash, rfc6962.DefaultHasher.Size())
	}
	cp := Checkpoint{Origin: sf.Origin, Size: sf.Size, RootHash: root}
	if sf.Checkpoint != "" {
		signed, err := openCheckpoint([]byte(sf.Checkpoint), v)
		if err != nil {
			return nil, bad("its checkpoint does not verify under the verifier key: %v", err)
		}
		if signed.Size != sf.Size || !bytes.Equal(signed.RootHash, root) {
			return nil, bad("its signed checkpoint (size %d) disagrees with its size %d / root_hash", signed.Size, sf.Size)
		}
		cp.Text = sf.Checkpoint
	}
	return &state{checkpoint: cp, checkedAt: sf.CheckedAt}, nil
}

// saveState atomically replaces the state file with cp: write a temporary
// file in the same directory, fsync it, rename it over path, fsync the
// directory. The file is 0600.
func saveState(path string, cp *Checkpoint, at time.Time) (err error) {
	sf := stateFile{
		Origin:     cp.Origin,
		Size:       cp.Size,
		RootHash:   base64.StdEncoding.EncodeToString(cp.RootHash),
		Checkpoint: cp.Text,
		CheckedAt:  at.UTC(),
	}
	data, err := json.MarshalIndent(sf, "", "  ")
	if err != nil {
		return fmt.Errorf("%w: encoding: %w", ErrState, err)
	}
	data = append(data, '\n')

	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	return nil
}
