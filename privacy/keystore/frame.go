package keystore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/stele/stele/internal/frame"
)

const (
	frameHeader   = frame.HeaderSize
	maxFrameBody  = 1 << 16 // far above any real entry; a bigger length is damage
	formatVersion = 1
	kidSize       = 16
	// MaxNameLen bounds a key name (subject HMACs and period names are short).
	MaxNameLen = 1024
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errTorn marks a frame cut short by a crash; errBadFrame a damaged one.
var (
	errTorn     = errors.New("torn frame")
	errBadFrame = errors.New("bad frame")
)

// appendFrame writes the one frame format of Stele's files
// (internal/frame: the checksum covers the length and the body).
func appendFrame(dst, body []byte) []byte { return frame.Append(dst, body) }

// nextFrame returns the body of the frame at the start of b and the bytes
// it used. errTorn: the frame runs past the end of b; errBadFrame: checksum
// or length is wrong. Frames written before the keystore moved to
// internal/frame checksum the body alone; they are still read (never
// written), so existing stores open without a migration, and a shard
// rewrite keeps their bytes as they are.
func nextFrame(b []byte) (body []byte, n int, err error) {
	body, n, err = frame.Parse(b, maxFrameBody)
	switch {
	case err == nil:
		return body, n, nil
	case errors.Is(err, frame.ErrTorn):
		return nil, 0, errTorn
	}
	l := int(frame.Length(b))
	if l > maxFrameBody {
		return nil, 0, errBadFrame
	}
	body = b[frameHeader : frameHeader+l]
	if crc32.Checksum(body, crcTable) != frame.StoredCRC(b) {
		return nil, 0, errBadFrame
	}
	return body, frameHeader + l, nil
}

type kidT [kidSize]byte

// entry is one stored key: wrapped only, never plaintext.
type entry struct {
	kind     Kind
	kid      kidT
	name     string
	masterID string
	wrapped  []byte
}

func appendEntryBody(dst []byte, e *entry) []byte {
	dst = append(dst, formatVersion, byte(e.kind))
	dst = append(dst, e.kid[:]...)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(e.name)))
	dst = append(dst, e.name...)
	dst = append(dst, byte(len(e.masterID)))
	dst = append(dst, e.masterID...)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(e.wrapped)))
	return append(dst, e.wrapped...)
}

func appendEntryFrame(dst []byte, e *entry, scratch []byte) ([]byte, []byte) {
	scratch = appendEntryBody(scratch[:0], e)
	return appendFrame(dst, scratch), scratch
}

func decodeEntry(b []byte) (*entry, error) {
	r := reader{b: b}
	if v := r.u8(); v != formatVersion {
		return nil, fmt.Errorf("entry format version %d, want %d", v, formatVersion)
	}
	e := &entry{kind: Kind(r.u8())}
	copy(e.kid[:], r.bytes(kidSize))
	e.name = string(r.bytes(int(r.u16())))
	e.masterID = string(r.bytes(int(r.u8())))
	e.wrapped = append([]byte(nil), r.bytes(int(r.u16()))...)
	if r.err || len(r.b) != 0 {
		return nil, errors.New("entry body has the wrong length")
	}
	if !e.kind.valid() {
		return nil, fmt.Errorf("entry kind %d unknown", e.kind)
	}
	return e, nil
}

func appendMasterBody(dst []byte, masterID string, wrapped []byte) []byte {
	dst = append(dst, formatVersion, byte(len(masterID)))
	dst = append(dst, masterID...)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(wrapped)))
	return append(dst, wrapped...)
}

func decodeMaster(b []byte) (masterID string, wrapped []byte, err error) {
	r := reader{b: b}
	if v := r.u8(); v != formatVersion {
		return "", nil, fmt.Errorf("MASTER format version %d, want %d", v, formatVersion)
	}
	masterID = string(r.bytes(int(r.u8())))
	wrapped = append([]byte(nil), r.bytes(int(r.u16()))...)
	if r.err || len(r.b) != 0 {
		return "", nil, errors.New("MASTER body has the wrong length")
	}
	return masterID, wrapped, nil
}

func appendDestroyedBody(dst []byte, kid kidT) []byte {
	return append(append(dst, formatVersion), kid[:]...)
}

func decodeDestroyed(b []byte) (kidT, error) {
	var k kidT
	if len(b) != 1+kidSize || b[0] != formatVersion {
		return k, errors.New("destroyed entry has the wrong length or version")
	}
	copy(k[:], b[1:])
	return k, nil
}

type reader struct {
	b   []byte
	err bool
}

func (r *reader) bytes(n int) []byte {
	if r.err || n > len(r.b) {
		r.err = true
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() uint8 {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) u16() uint16 {
	b := r.bytes(2)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}

// wrapPlain is what a master key wraps: kid | kind | key | name. Binding kid,
// kind and name means a wrapped key copied onto another entry fails to unwrap.
func wrapPlain(e *entry, key []byte) []byte {
	p := make([]byte, 0, kidSize+1+len(key)+len(e.name))
	p = append(p, e.kid[:]...)
	p = append(p, byte(e.kind))
	p = append(p, key...)
	return append(p, e.name...)
}

// keyFromPlain checks the binding and returns the data key.
func keyFromPlain(e *entry, p []byte) ([]byte, error) {
	if len(p) != kidSize+1+KeySize+len(e.name) ||
		kidT(p[:kidSize]) != e.kid || Kind(p[kidSize]) != e.kind ||
		string(p[kidSize+1+KeySize:]) != e.name {
		return nil, fmt.Errorf("kid %s: unwrapped key does not belong to this entry: %w", e.kid, ErrCorrupt)
	}
	return p[kidSize+1 : kidSize+1+KeySize], nil
}
