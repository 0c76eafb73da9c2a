//go:build linux && cgo

package gctune

/*
#include <malloc.h>

// fixMmapThreshold pins glibc's mmap threshold; see fixMallocThreshold.
static void fixMmapThreshold(int bytes) {
#ifdef M_MMAP_THRESHOLD
	mallopt(M_MMAP_THRESHOLD, bytes);
#endif
}
*/
import "C"

// mmapThreshold is glibc's initial mmap threshold: allocations this large
// or larger get their own mapping, returned to the system when freed.
const mmapThreshold = 128 << 10

// fixMallocThreshold stops glibc from raising its mmap threshold. Pebble
// allocates its memtables and block cache with C malloc, outside the Go
// heap. Each time a mapped chunk is freed glibc raises the threshold to
// its size (up to 32 MiB), so the next memtables of up to 32 MiB came from
// its arenas, and freed ones stayed resident there: in `stele bench
// --only stream`, which opens six indexes one after the other, the
// memory outside the Go heap grew from 50 to 195 MiB across the runs;
// with the threshold fixed it stayed between 55 and 90 MiB.
func fixMallocThreshold() { C.fixMmapThreshold(mmapThreshold) }
