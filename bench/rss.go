package bench

import (
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// rssMeter reports each phase's own peak RSS: before a phase it returns
// freed memory to the system and resets the kernel's high-water mark
// (writing 5 to /proc/self/clear_refs), so the mark read after the phase
// is that phase's. Where the reset is refused the readings are the
// process's peak so far, and Label says so.
type rssMeter struct{ resetFailed bool }

// Start begins a phase.
func (m *rssMeter) Start() {
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		m.resetFailed = true
	}
}

// Peak is the peak RSS since Start, in bytes.
func (m *rssMeter) Peak() int64 {
	if kb, err := procStatusKB("VmHWM"); err == nil {
		return kb << 10
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Maxrss << 10
}

// Label describes what the readings are.
func (m *rssMeter) Label() string {
	if m.resetFailed {
		return "peak so far at the end of each phase: the peak could not be reset"
	}
	return "each phase's own peak"
}

// procStatusKB reads a /proc/self/status field given in kB.
func procStatusKB(field string) (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", field)
}

// sampleGoMemory records in *peak, every 20 ms until the returned function
// is called, the most memory the Go runtime held from the system (mapped
// and not released): what of the peak RSS is Go's, the rest being Pebble's
// memtables and cache, glibc and the binary. The returned function may be
// called more than once.
func sampleGoMemory(peak *int64) (stop func()) {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	read := func() {
		metrics.Read(s)
		*peak = max(*peak, int64(s[0].Value.Uint64()-s[1].Value.Uint64()))
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			read()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-stopped
		})
	}
}
