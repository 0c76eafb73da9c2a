package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/stele/stele/log"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/record"
)

const deadLetterPurpose = "dead-letter"

// deadLetter parks captured records the log refused (they broke their
// schema), so nothing a source delivered is lost: each line holds the
// reason in clear and the record encrypted under a system key, since
// personal fields of an invalid record may not have been sealed.
type deadLetter struct {
	path  string
	guard *privacy.Guard
	log   *slog.Logger
	mu    sync.Mutex
}

type deadLetterLine struct {
	ParkedAt time.Time `json:"parked_at"`
	Source   string    `json:"source"`
	ID       string    `json:"id"`
	Field    string    `json:"field"`
	Reason   string    `json:"reason"`
	Record   string    `json:"record_sealed"`
}

func (d *deadLetter) park(ctx context.Context, r *record.Record, fe *record.FieldError) error {
	sealed, err := d.guard.SealOpaque(ctx, deadLetterPurpose, record.AppendJSON(nil, r))
	if err != nil {
		return err
	}
	line, err := json.Marshal(deadLetterLine{ParkedAt: time.Now().UTC(), Source: privacy.SubjectName(r.Source), ID: r.ID,
		Field: fe.Field, Reason: fe.Reason, Record: base64.StdEncoding.EncodeToString(sealed)})
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(d.path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(d.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	d.log.Warn("captured record parked in the dead-letter file: it does not match its schema",
		"source", privacy.SubjectName(r.Source), "id", r.ID, "field", fe.Field, "reason", fe.Reason, "file", d.path)
	return nil
}

// appendOrPark appends recs; a record refused for breaking its schema is
// parked (durably) and the rest appended, so the source may acknowledge
// its position.
func (d *deadLetter) appendOrPark(ctx context.Context, store *log.Store, recs []*record.Record) ([]log.Appended, error) {
	for {
		res, err := store.Append(ctx, recs)
		var re *log.RecordError
		var fe *record.FieldError
		if err == nil || !errors.As(err, &re) || !errors.As(re.Err, &fe) || d == nil {
			return res, err
		}
		if perr := d.park(ctx, recs[re.Index], fe); perr != nil {
			return nil, fmt.Errorf("park a record in the dead-letter file: %w (the record: %w)", perr, err)
		}
		recs = append(recs[:re.Index:re.Index], recs[re.Index+1:]...)
		if len(recs) == 0 {
			return nil, nil
		}
	}
}
