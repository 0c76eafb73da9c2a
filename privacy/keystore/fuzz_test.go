package keystore

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stele/stele/internal/vfs"
)

// FuzzReadFrames: a shard file read at Open may hold anything the disk
// gives. Reading it never panics; it either fails (damage, named), or
// reads the frames it holds, cutting a torn tail — after which the file
// reads again cleanly, with the same frames and nothing cut.
func FuzzReadFrames(f *testing.F) {
	e := &entry{kind: KindSubject, name: "s-1", masterID: "file:test"}
	e.kid[0] = 3
	good, _ := appendEntryFrame(nil, e, nil)
	f.Add(good)
	f.Add(append(append([]byte(nil), good...), good[:5]...))
	f.Add(append(append([]byte(nil), good...), 0, 0, 0, 0))
	f.Add(good[:len(good)-1])
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "03.keys")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var first [][]byte
		torn, err := readFrames(vfs.Default, path, func(body []byte) error {
			if _, err := decodeEntry(body); err != nil {
				return err
			}
			first = append(first, append([]byte(nil), body...))
			return nil
		})
		if err != nil {
			return
		}
		n := 0
		tornAgain, err := readFrames(vfs.Default, path, func(body []byte) error {
			if n >= len(first) || string(first[n]) != string(body) {
				t.Fatalf("frame %d differs on the second read", n)
			}
			n++
			return nil
		})
		if err != nil || tornAgain || n != len(first) {
			t.Fatalf("second read after cutting (torn %t): %d of %d frames, torn again %t, %v", torn, n, len(first), tornAgain, err)
		}
	})
}
