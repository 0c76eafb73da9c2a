//go:build !linux || !cgo

package gctune

// fixMallocThreshold has nothing to do without cgo (Pebble then allocates
// on the Go heap) or away from glibc.
func fixMallocThreshold() {}
