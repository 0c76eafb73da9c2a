package query

import (
	"context"

	"github.com/stele/stele/index"
)

// maxTables bounds the tables one call lists: a log fed by thousands of
// tables is read in full by no page.
const maxTables = 10000

// Tables lists the tables of the log with their record counts and newest
// record (the lineage view); it reads the index, no record. Like every
// query it waits for the index to cover the records acknowledged before
// it, so an appended record is always counted.
func (e *Engine) Tables(ctx context.Context) ([]index.TableStats, error) {
	if _, err := e.snapshot(ctx); err != nil {
		return nil, err
	}
	var out []index.TableStats
	err := e.ix.Tables(func(t index.TableStats) bool {
		out = append(out, t)
		return len(out) < maxTables && ctx.Err() == nil
	})
	if err == nil {
		err = ctx.Err()
	}
	return out, err
}
