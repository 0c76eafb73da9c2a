package logstore

import (
	"github.com/stele/stele/internal/frame"
)

// frameHeader is the bytes before each frame's payload (internal/frame).
const frameHeader = frame.HeaderSize

// errTorn marks a frame cut short by the end of the file.
var errTorn = frame.ErrTorn

// errChecksum marks a frame whose bytes do not match its checksum.
var errChecksum = frame.ErrChecksum

// maxFrame bounds a frame's length so a corrupt length field cannot make a
// reader allocate gigabytes.
const maxFrame = 64 << 20

// MaxRecordSize is the largest stored record Append accepts: one frame.
// Recovery treats a longer frame as damage, so Append must never write one.
const MaxRecordSize = maxFrame

func appendFrame(dst, payload []byte) []byte { return frame.Append(dst, payload) }

// putFrameHeader writes the header of the frame holding payload.
func putFrameHeader(hdr, payload []byte) { frame.PutHeader(hdr, payload) }

func frameCRC(hdr, payload []byte) uint32 { return frame.CRC(hdr, payload) }

// parseFrame reads the frame at the start of buf and returns its payload and
// total length. errTorn means buf ends inside the frame.
func parseFrame(buf []byte) (payload []byte, n int, err error) {
	return frame.Parse(buf, maxFrame)
}
