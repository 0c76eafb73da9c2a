package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
)

// version is the release version; builds between releases say -dev.
const version = "0.1.0-dev"

func runVersion(ctx context.Context, args []string) error {
	fs := newFlagSet("version", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(os.Stdout, versionString())
	return nil
}

// versionString names the version, the Go toolchain and, when the binary
// was built from a VCS checkout, the revision it was built from.
func versionString() string {
	s := "stele " + version + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return s
	}
	var rev, at, modified string
	for _, kv := range info.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.time":
			at = kv.Value
		case "vcs.modified":
			modified = kv.Value
		}
	}
	if rev != "" {
		s += " revision " + rev
		if at != "" {
			s += " (" + at + ")"
		}
		if modified == "true" {
			s += " with local changes"
		}
	}
	return s
}
