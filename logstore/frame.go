package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

const frameHeader = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errTorn marks a frame cut short by the end of the file.
var errTorn = errors.New("frame extends past end of file")

// errChecksum marks a frame whose bytes do not match its checksum.
var errChecksum = errors.New("frame checksum mismatch")

// maxFrame bounds a frame's length so a corrupt length field cannot make a
// reader allocate gigabytes.
const maxFrame = 64 << 20

// MaxRecordSize is the largest stored record Append accepts: one frame.
// Recovery treats a longer frame as damage, so Append must never write one.
const MaxRecordSize = maxFrame

func appendFrame(dst, payload []byte) []byte {
	var hdr [frameHeader]byte
	putFrameHeader(hdr[:], payload)
	dst = append(dst, hdr[:]...)
	return append(dst, payload...)
}

// putFrameHeader writes the header of the frame holding payload: its
// length, then the CRC-32C of the length and the payload.
func putFrameHeader(hdr, payload []byte) {
	binary.LittleEndian.PutUint32(hdr[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(hdr[4:8], frameCRC(hdr, payload))
}

func frameCRC(hdr, payload []byte) uint32 {
	return crc32.Update(crc32.Update(0, castagnoli, hdr[0:4]), castagnoli, payload)
}

// parseFrame reads the frame at the start of buf and returns its payload and
// total length. errTorn means buf ends inside the frame.
func parseFrame(buf []byte) (payload []byte, n int, err error) {
	if len(buf) < frameHeader {
		return nil, 0, errTorn
	}
	length := binary.LittleEndian.Uint32(buf[0:4])
	if length > maxFrame {
		return nil, 0, fmt.Errorf("%w: length %d exceeds %d", errChecksum, length, maxFrame)
	}
	end := frameHeader + int(length)
	if len(buf) < end {
		return nil, 0, errTorn
	}
	if frameCRC(buf, buf[frameHeader:end]) != binary.LittleEndian.Uint32(buf[4:8]) {
		return nil, 0, errChecksum
	}
	return buf[frameHeader:end], end, nil
}
