package export

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/parquet-go/parquet-go"

	"github.com/stele/stele/record"
)

// rowWriter renders records as rows of one format.
type rowWriter interface {
	write(r *record.Record) error
	// close flushes everything and ends the file; it does not close the
	// underlying writer.
	close() error
}

// rowReader reads rows back into records. Each row is checked to be exactly
// the rendering of the record it yields (a ColumnError otherwise), so a
// record proven genuine vouches for every byte of its row.
type rowReader interface {
	next() (*record.Record, error) // io.EOF after the last row
}

func newRowWriter(f Format, w io.Writer) (rowWriter, error) {
	switch f {
	case JSONL:
		return &jsonlWriter{w: bufio.NewWriterSize(w, 256<<10)}, nil
	case CSV:
		cw := &csvWriter{bw: bufio.NewWriterSize(w, 256<<10)}
		cw.w = csv.NewWriter(cw.bw)
		if err := cw.w.Write(Columns); err != nil {
			return nil, err
		}
		return cw, nil
	case Parquet:
		return newParquetWriter(w), nil
	}
	return nil, fmt.Errorf("%w %q", ErrFormat, f)
}

// --- JSON Lines: each line is the record's API JSON (GET /v1/records).

type jsonlWriter struct {
	w   *bufio.Writer
	buf []byte
}

func (j *jsonlWriter) write(r *record.Record) error {
	j.buf = append(record.AppendJSON(j.buf[:0], r), '\n')
	_, err := j.w.Write(j.buf)
	return err
}

func (j *jsonlWriter) close() error { return j.w.Flush() }

type jsonlReader struct {
	r   *bufio.Reader
	buf []byte
}

func (j *jsonlReader) next() (*record.Record, error) {
	line, err := j.r.ReadBytes('\n')
	if err == io.EOF && len(line) == 0 {
		return nil, io.EOF
	}
	if err != nil && err != io.EOF {
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	r := new(record.Record)
	if err := json.Unmarshal(line, r); err != nil {
		return nil, &ColumnError{Column: "(line)", Reason: "not a record: " + err.Error()}
	}
	if r.Tx != nil && r.Tx.CommitTime != nil {
		t := r.Tx.CommitTime.UTC()
		r.Tx.CommitTime = &t
	}
	r.OccurredAt, r.RecordedAt = r.OccurredAt.UTC(), r.RecordedAt.UTC()
	j.buf = record.AppendJSON(j.buf[:0], r)
	if !bytes.Equal(j.buf, line) {
		return r, &ColumnError{Column: "(line)", Reason: "is not the canonical JSON of the record it holds (extra, reordered or reformatted members)"}
	}
	return r, nil
}

// --- CSV: the flat Columns, JSON values as text, times in RFC 3339 UTC.

type csvWriter struct {
	bw  *bufio.Writer
	w   *csv.Writer
	row []string
}

func csvRow(dst []string, r *record.Record) ([]string, error) {
	f, err := flatten(r)
	if err != nil {
		return nil, err
	}
	changed, err := changedJSON(r.Changed)
	if err != nil {
		return nil, err
	}
	return append(dst[:0], fmt.Sprint(r.Seq), f.id, f.sourceName, f.sourceKind, f.database, f.schema, f.table, f.op,
		f.key, f.before, f.after, changed, f.actorID, f.actor, f.txID, f.txPosition, f.tx,
		f.cause, f.schemaRef, formatTime(r.OccurredAt), formatTime(r.RecordedAt)), nil
}

func (c *csvWriter) write(r *record.Record) error {
	row, err := csvRow(c.row, r)
	if err != nil {
		return err
	}
	c.row = row
	return c.w.Write(row)
}

func (c *csvWriter) close() error {
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return err
	}
	return c.bw.Flush()
}

type csvReader struct {
	r    *csv.Reader
	want []string
}

func newCSVReader(r io.Reader) (*csvReader, error) {
	cr := csv.NewReader(bufio.NewReaderSize(r, 256<<10))
	cr.FieldsPerRecord = len(Columns)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("read CSV header: %w", err)
	}
	if !slices.Equal(header, Columns) {
		return nil, fmt.Errorf("CSV header is %q, want %q", header, Columns)
	}
	return &csvReader{r: cr}, nil
}

func (c *csvReader) next() (*record.Record, error) {
	row, err := c.r.Read()
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, &ColumnError{Column: "(row)", Reason: err.Error()}
	}
	col := func(name string) string { return row[slices.Index(Columns, name)] }
	r := new(record.Record)
	if r.Seq, err = parseSeq(row[0]); err != nil {
		return nil, err
	}
	f := flat{id: col("id"), sourceName: col("source_name"), sourceKind: col("source_kind"),
		database: col("database"), schema: col("schema"), table: col("table"), op: col("op"),
		key: col("key"), before: col("before"), after: col("after"), actor: col("actor"),
		tx: col("tx"), cause: col("cause"), schemaRef: col("schema_ref")}
	if err := unflatten(f, r); err != nil {
		return r, err
	}
	if s := col("changed"); s != "" {
		if err := unmarshalStrict(s, &r.Changed); err != nil {
			return r, &ColumnError{Column: "changed", Reason: err.Error()}
		}
	}
	if r.OccurredAt, err = parseTime("occurred_at", col("occurred_at")); err != nil {
		return r, err
	}
	if r.RecordedAt, err = parseTime("recorded_at", col("recorded_at")); err != nil {
		return r, err
	}
	want, err := csvRow(c.want, r)
	if err != nil {
		return r, &ColumnError{Column: "(row)", Reason: err.Error()}
	}
	c.want = want
	for i := range want {
		if want[i] != row[i] {
			return r, &ColumnError{Column: Columns[i], Reason: fmt.Sprintf("is %q, but the record it holds renders as %q", row[i], want[i])}
		}
	}
	return r, nil
}

// --- Parquet: the flat Columns; JSON values with the JSON logical type,
// times as TIMESTAMP(NANOS, UTC), changed as a LIST of strings.

type parquetRow struct {
	Seq        int64    `parquet:"seq"`
	ID         string   `parquet:"id"`
	SourceName string   `parquet:"source_name,dict"`
	SourceKind string   `parquet:"source_kind,dict"`
	Database   string   `parquet:"database,optional,dict"`
	Schema     string   `parquet:"schema,optional,dict"`
	Table      string   `parquet:"table,dict"`
	Op         string   `parquet:"op,dict"`
	Key        string   `parquet:"key"`
	Before     string   `parquet:"before,optional"`
	After      string   `parquet:"after,optional"`
	Changed    []string `parquet:"changed,list"`
	ActorID    string   `parquet:"actor_id,optional"`
	Actor      string   `parquet:"actor,optional"`
	TxID       string   `parquet:"tx_id,optional"`
	TxPosition string   `parquet:"tx_position,optional"`
	Tx         string   `parquet:"tx,optional"`
	Cause      string   `parquet:"cause,optional"`
	SchemaRef  string   `parquet:"schema_ref,optional"`
	OccurredAt int64    `parquet:"occurred_at,timestamp(nanosecond)"`
	RecordedAt int64    `parquet:"recorded_at,timestamp(nanosecond)"`
}

func toParquet(r *record.Record) (parquetRow, error) {
	f, err := flatten(r)
	if err != nil {
		return parquetRow{}, err
	}
	occ, err := nanos(r.Seq, "occurred_at", r.OccurredAt)
	if err != nil {
		return parquetRow{}, err
	}
	rec, err := nanos(r.Seq, "recorded_at", r.RecordedAt)
	if err != nil {
		return parquetRow{}, err
	}
	return parquetRow{
		Seq: int64(r.Seq), ID: f.id, SourceName: f.sourceName, SourceKind: f.sourceKind,
		Database: f.database, Schema: f.schema, Table: f.table, Op: f.op,
		Key: f.key, Before: f.before, After: f.after, Changed: r.Changed,
		ActorID: f.actorID, Actor: f.actor, TxID: f.txID, TxPosition: f.txPosition, Tx: f.tx,
		Cause: f.cause, SchemaRef: f.schemaRef, OccurredAt: occ, RecordedAt: rec,
	}, nil
}

// parquetBatch is how many rows are handed to the Parquet writer at once,
// and parquetRowGroup bounds a row group, which the writer holds in memory
// until it is complete.
const (
	parquetBatch    = 512
	parquetRowGroup = 64 << 10
)

type parquetWriter struct {
	w     *parquet.GenericWriter[parquetRow]
	batch []parquetRow
}

func newParquetWriter(w io.Writer) *parquetWriter {
	return &parquetWriter{
		w: parquet.NewGenericWriter[parquetRow](w,
			parquet.Compression(&parquet.Snappy),
			parquet.MaxRowsPerRowGroup(parquetRowGroup),
			parquet.CreatedBy("stele", "", "")),
		batch: make([]parquetRow, 0, parquetBatch),
	}
}

func (p *parquetWriter) write(r *record.Record) error {
	row, err := toParquet(r)
	if err != nil {
		return err
	}
	p.batch = append(p.batch, row)
	if len(p.batch) == cap(p.batch) {
		return p.flush()
	}
	return nil
}

func (p *parquetWriter) flush() error {
	if len(p.batch) == 0 {
		return nil
	}
	_, err := p.w.Write(p.batch)
	clear(p.batch)
	p.batch = p.batch[:0]
	return err
}

func (p *parquetWriter) close() error {
	if err := p.flush(); err != nil {
		return err
	}
	return p.w.Close()
}

type parquetReader struct {
	r     *parquet.GenericReader[parquetRow]
	batch []parquetRow
	pos   int
	eof   bool
}

func newParquetReader(ra io.ReaderAt, size int64) (*parquetReader, error) {
	f, err := parquet.OpenFile(ra, size)
	if err != nil {
		return nil, fmt.Errorf("open Parquet file: %w", err)
	}
	var got []string
	for _, c := range f.Schema().Fields() {
		got = append(got, c.Name())
	}
	if !slices.Equal(got, Columns) {
		return nil, fmt.Errorf("the Parquet file's columns are %q, want %q", got, Columns)
	}
	return &parquetReader{r: parquet.NewGenericReader[parquetRow](f), batch: make([]parquetRow, 0, parquetBatch)}, nil
}

func (p *parquetReader) next() (*record.Record, error) {
	if p.pos == len(p.batch) {
		if p.eof {
			return nil, io.EOF
		}
		p.batch = p.batch[:cap(p.batch)]
		clear(p.batch)
		n, err := p.r.Read(p.batch)
		p.batch, p.pos = p.batch[:n], 0
		if errors.Is(err, io.EOF) {
			p.eof = true
		} else if err != nil {
			return nil, &ColumnError{Column: "(row)", Reason: err.Error()}
		}
		if n == 0 {
			return nil, io.EOF
		}
	}
	row := &p.batch[p.pos]
	p.pos++
	if row.Seq < 0 {
		return nil, &ColumnError{Column: "seq", Reason: fmt.Sprintf("%d is negative", row.Seq)}
	}
	r := &record.Record{Seq: uint64(row.Seq), Changed: row.Changed,
		OccurredAt: fromNanos(row.OccurredAt), RecordedAt: fromNanos(row.RecordedAt)}
	if len(r.Changed) == 0 {
		r.Changed = nil
	}
	f := flat{id: row.ID, sourceName: row.SourceName, sourceKind: row.SourceKind, database: row.Database,
		schema: row.Schema, table: row.Table, op: row.Op, key: row.Key, before: row.Before, after: row.After,
		actor: row.Actor, tx: row.Tx, cause: row.Cause, schemaRef: row.SchemaRef}
	if err := unflatten(f, r); err != nil {
		return r, err
	}
	want, err := toParquet(r)
	if err != nil {
		return r, &ColumnError{Column: "(row)", Reason: err.Error()}
	}
	if col, got, exp := diffParquet(*row, want); col != "" {
		return r, &ColumnError{Column: col, Reason: fmt.Sprintf("is %v, but the record it holds renders as %v", got, exp)}
	}
	return r, nil
}

// diffParquet names the first column where a and b differ.
func diffParquet(a, b parquetRow) (col string, av, bv any) {
	pairs := []struct {
		name string
		a, b any
	}{
		{"seq", a.Seq, b.Seq}, {"id", a.ID, b.ID}, {"source_name", a.SourceName, b.SourceName},
		{"source_kind", a.SourceKind, b.SourceKind}, {"database", a.Database, b.Database},
		{"schema", a.Schema, b.Schema}, {"table", a.Table, b.Table}, {"op", a.Op, b.Op},
		{"key", a.Key, b.Key}, {"before", a.Before, b.Before}, {"after", a.After, b.After},
		{"changed", fmt.Sprintf("%q", a.Changed), fmt.Sprintf("%q", b.Changed)},
		{"actor_id", a.ActorID, b.ActorID}, {"actor", a.Actor, b.Actor}, {"tx_id", a.TxID, b.TxID},
		{"tx_position", a.TxPosition, b.TxPosition}, {"tx", a.Tx, b.Tx}, {"cause", a.Cause, b.Cause},
		{"schema_ref", a.SchemaRef, b.SchemaRef}, {"occurred_at", a.OccurredAt, b.OccurredAt},
		{"recorded_at", a.RecordedAt, b.RecordedAt},
	}
	for _, p := range pairs {
		if p.a != p.b {
			return p.name, p.a, p.b
		}
	}
	return "", nil, nil
}

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 256<<10) }
