package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
)

// readFile is what scanning needs of a file: a vfs.File, or an *os.File
// opened by the offline verifier.
type readFile interface {
	io.ReaderAt
	Stat() (fs.FileInfo, error)
	Name() string
}

// frameScanner reads frames sequentially with one large buffer; it is the
// fast path for recovery, verification and replay.
type frameScanner struct {
	f      readFile
	buf    []byte
	start  int   // first unread byte in buf
	end    int   // end of valid data in buf
	off    int64 // file offset of buf[start]
	fileSz int64
	eof    bool
}

func newFrameScanner(f readFile, from int64, bufSize int) (*frameScanner, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	return &frameScanner{f: f, buf: make([]byte, bufSize), off: from, fileSz: st.Size()}, nil
}

// next returns the next frame's payload (valid until the following call) and
// its file offset. io.EOF means a clean end; errTorn means the file ends
// inside a frame; errChecksum means a damaged frame.
func (s *frameScanner) next() (payload []byte, off int64, err error) {
	for {
		p, n, err := parseFrame(s.buf[s.start:s.end])
		if err == nil {
			off = s.off
			s.start += n
			s.off += int64(n)
			return p, off, nil
		}
		if !errors.Is(err, errTorn) {
			return nil, s.off, err
		}
		if s.eof {
			if s.start == s.end {
				return nil, s.off, io.EOF
			}
			return nil, s.off, errTorn
		}
		if err := s.fill(); err != nil {
			return nil, s.off, err
		}
	}
}

func (s *frameScanner) fill() error {
	// Move the partial frame to the front, growing the buffer if a single
	// frame is larger than it.
	n := copy(s.buf, s.buf[s.start:s.end])
	s.start, s.end = 0, n
	if s.end == len(s.buf) {
		grown := make([]byte, 2*len(s.buf))
		copy(grown, s.buf[:s.end])
		s.buf = grown
	}
	readAt := s.off + int64(s.end)
	m, err := s.f.ReadAt(s.buf[s.end:], readAt)
	s.end += m
	if err == io.EOF || readAt+int64(m) >= s.fileSz {
		s.eof = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s at %d: %w", s.f.Name(), readAt, err)
	}
	return nil
}

// maxCheckpointFrame bounds a checkpoint note: an origin line, a size, a
// root and a few signature lines.
const maxCheckpointFrame = 64 << 10

// lengthDamaged tells a frame at off that the scanner found running past the
// end of f (errTorn) from a torn final write. A torn write leaves a prefix of
// one frame, so if a complete frame starts anywhere after off, or more bytes
// follow than one frame of at most maxLen can hold, the length field itself
// was changed and every frame after it would silently be dropped.
func lengthDamaged(f readFile, off int64, maxLen int) (bool, error) {
	st, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	rest := st.Size() - off
	if rest > int64(frameHeader+maxLen) {
		return true, nil
	}
	buf := make([]byte, rest)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return false, fmt.Errorf("read %s at %d: %w", f.Name(), off, err)
	}
	if len(buf) > frameHeader {
		// A whole final frame whose length alone was changed still matches
		// its checksum once the length is put right.
		var lb [4]byte
		binary.LittleEndian.PutUint32(lb[:], uint32(len(buf)-frameHeader))
		if frameCRC(lb[:], buf[frameHeader:]) == binary.LittleEndian.Uint32(buf[4:8]) {
			return true, nil
		}
	}
	for i := 1; i+frameHeader <= len(buf); i++ {
		if _, _, err := parseFrame(buf[i:]); err == nil {
			return true, nil
		}
	}
	return false, nil
}
