// Package frame is the one framing of Stele's own files (records.log,
// checkpoints.log, the keystore's shard, DESTROYED and MASTER files): a
// length and a checksum before each payload, so a reader finds where a
// write was cut short and which bytes changed.
//
//	+----------------+----------------------+----------------------+
//	| length  uint32 | crc32c       uint32  | payload (length B)   |
//	| little endian  | of length || payload |                      |
//	+----------------+----------------------+----------------------+
//
// The checksum covers the length too, so a changed length is caught even
// when the bytes it now frames happen to end at a plausible place.
package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// HeaderSize is the bytes before each payload.
const HeaderSize = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// ErrTorn: the buffer ends inside the frame (a write cut short, or
	// more to read).
	ErrTorn = errors.New("frame extends past end of file")
	// ErrChecksum: the frame's bytes do not match its checksum, or its
	// length is beyond what the file allows.
	ErrChecksum = errors.New("frame checksum mismatch")
)

// Append appends the frame holding payload to dst.
func Append(dst, payload []byte) []byte {
	var hdr [HeaderSize]byte
	PutHeader(hdr[:], payload)
	dst = append(dst, hdr[:]...)
	return append(dst, payload...)
}

// PutHeader writes into hdr (HeaderSize bytes) the header of the frame
// holding payload, for a caller that builds the payload in place.
func PutHeader(hdr, payload []byte) {
	binary.LittleEndian.PutUint32(hdr[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(hdr[4:8], CRC(hdr[0:4], payload))
}

// CRC is the checksum of a frame with this 4-byte length field and payload.
func CRC(length, payload []byte) uint32 {
	return crc32.Update(crc32.Update(0, castagnoli, length[0:4]), castagnoli, payload)
}

// Parse reads the frame at the start of buf and returns its payload and
// total length. A length above maxLen is damage (ErrChecksum), so a
// corrupt length field cannot make a reader allocate gigabytes.
func Parse(buf []byte, maxLen int) (payload []byte, n int, err error) {
	if len(buf) < HeaderSize {
		return nil, 0, ErrTorn
	}
	length := binary.LittleEndian.Uint32(buf[0:4])
	if int64(length) > int64(maxLen) {
		return nil, 0, fmt.Errorf("%w: length %d exceeds %d", ErrChecksum, length, maxLen)
	}
	end := HeaderSize + int(length)
	if len(buf) < end {
		return nil, 0, ErrTorn
	}
	if CRC(buf, buf[HeaderSize:end]) != binary.LittleEndian.Uint32(buf[4:8]) {
		return nil, 0, ErrChecksum
	}
	return buf[HeaderSize:end], end, nil
}

// Length is the length field of the frame header at the start of hdr.
func Length(hdr []byte) uint32 { return binary.LittleEndian.Uint32(hdr[0:4]) }

// StoredCRC is the checksum field of the frame header at the start of hdr.
func StoredCRC(hdr []byte) uint32 { return binary.LittleEndian.Uint32(hdr[4:8]) }
