package main

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/stele/stele/auth"
)

// exists reports whether path exists (an unreadable path counts as
// existing, so nothing treats it as fresh).
func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// cleanupRefused runs when serve returns, with the data directory's lock
// still held. After a refused or failed start it removes what that start
// left for nothing: the whole directory if this start created it and no
// record or token was stored in it, or else a lone LOCK file.
func cleanupRefused(data string, created bool, err error, logger *slog.Logger) {
	if err == nil {
		return
	}
	entries, rerr := os.ReadDir(data)
	if rerr != nil {
		return
	}
	if created && !holdsRecords(data) && !exists(filepath.Join(data, auth.TokenFile)) {
		if rerr := os.RemoveAll(data); rerr != nil {
			logger.Warn("could not remove the data directory this failed start created", "data", data, "err", rerr)
		}
		return
	}
	if len(entries) == 1 && entries[0].Name() == "LOCK" {
		_ = os.Remove(filepath.Join(data, "LOCK"))
	}
}

// holdsRecords reports whether data's log holds anything.
func holdsRecords(data string) bool {
	fi, err := os.Stat(filepath.Join(data, "records.log"))
	return err == nil && fi.Size() > 0 || err != nil && !errors.Is(err, os.ErrNotExist)
}
