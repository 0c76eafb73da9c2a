package postgres

// # DDL and schema versions
//
// With Config.CaptureDDL, set-up installs the function stele_ddl_capture()
// and the event trigger stele_ddl_capture on ddl_command_end (when the
// trigger is missing; creating event triggers needs a superuser). The
// trigger emits a transactional logical message with prefix "stele.ddl"
// whose content is {"command": tag, "objects": [{"command_tag",
// "object_type", "schema", "table", "identity"}…], "statement":
// current_query()}. The stream turns each such message into an op "ddl"
// record: source.schema/table name the first affected table (empty when
// none), key {"object": identity of the first object, else the command
// tag}, after the message itself. It is numbered within its transaction
// like row changes (the message sits in the WAL), so replay yields the same
// ids. Every DDL command of the database is recorded, including those on
// tables outside the publication. DROP commands report no objects at
// ddl_command_end; their records hold the command and the statement only.
// With CaptureDDL off, stele.ddl messages (from a trigger left installed)
// are ignored; Stele never drops the trigger itself.
//
// Without CaptureDDL, a Relation message for a table whose column list
// (names, type OIDs, type modifiers) differs from the definition this
// source saw before yields an op "ddl" record keyed {"relation":
// "schema.table"} with after {"columns": [{"name", "type"}…], "version":
// n}. These records are numbered after every row of their transaction, so
// whether or not one is produced never changes the rows' ids. Limit: the
// previous definition is only known within one process, so a relation change
// that lands right after a Stele restart (the first Relation message of a
// table seen by the new process) yields no ddl record; with CaptureDDL on,
// the trigger's record covers it.
//
// Row and snapshot records carry schema {subject: "<source>.<schema>.<table>",
// version: n}, where n counts the distinct column lists this source has seen
// for the table since the process started (1 for the first). There is no
// schema registry yet, so versions restart at 1 after a Stele restart, and a
// replayed record keeps whichever version was stored first.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/stele/stele/record"
)

// DDLPrefix is the logical-message prefix of the DDL event trigger.
const DDLPrefix = "stele.ddl"

const ddlFunction = `CREATE OR REPLACE FUNCTION stele_ddl_capture() RETURNS event_trigger
LANGUAGE plpgsql AS $stele$
DECLARE
	objs json;
BEGIN
	SELECT coalesce(json_agg(json_build_object(
		'command_tag', d.command_tag,
		'object_type', d.object_type,
		'schema', d.schema_name,
		'table', CASE WHEN d.classid = 'pg_catalog.pg_class'::regclass
			THEN (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = d.objid AND c.relkind IN ('r', 'p')) END,
		'identity', d.object_identity)), '[]'::json)
	INTO objs
	FROM pg_catalog.pg_event_trigger_ddl_commands() d;
	PERFORM pg_catalog.pg_logical_emit_message(true, 'stele.ddl',
		pg_catalog.json_build_object('command', tg_tag, 'objects', objs, 'statement', pg_catalog.current_query())::text);
END
$stele$`

// setupDDL installs the DDL event trigger when Config.CaptureDDL asks for it.
func (s *Source) setupDDL(ctx context.Context, conn *pgx.Conn) error {
	if !s.cfg.CaptureDDL {
		return nil
	}
	var enabled string
	err := conn.QueryRow(ctx, "SELECT evtenabled::text FROM pg_event_trigger WHERE evtname = 'stele_ddl_capture'").Scan(&enabled)
	switch {
	case err == nil:
		if enabled == "D" {
			s.logger.Warn("set-up: DDL event trigger stele_ddl_capture is disabled; DDL is not captured until ALTER EVENT TRIGGER stele_ddl_capture ENABLE")
		} else {
			s.logger.Info("set-up: DDL event trigger exists", "trigger", "stele_ddl_capture")
		}
		return nil
	case err != pgx.ErrNoRows:
		return fmt.Errorf("look up event trigger stele_ddl_capture: %w", classify(err))
	case s.cfg.SkipSetup:
		return fmt.Errorf("%w: capture_ddl is on but the event trigger stele_ddl_capture does not exist and set-up is skipped: let Stele create it (as a superuser) or turn capture_ddl off", ErrConfig)
	}
	// The function first: the trigger does not exist yet, so creating it
	// is not itself captured (and event-trigger commands never are).
	if _, err := conn.Exec(ctx, ddlFunction); err != nil {
		return fmt.Errorf("create function stele_ddl_capture(): %w", classify(err))
	}
	if _, err := conn.Exec(ctx, "CREATE EVENT TRIGGER stele_ddl_capture ON ddl_command_end EXECUTE FUNCTION stele_ddl_capture()"); err != nil {
		return fmt.Errorf("create event trigger stele_ddl_capture (needs a superuser): %w", classify(err))
	}
	s.logger.Info("set-up: created DDL event trigger", "trigger", "stele_ddl_capture", "function", "stele_ddl_capture()")
	return nil
}

// ddlMessage turns a DDL event trigger message into a ddl record.
func (x *stream) ddlMessage(m *pglogrepl.LogicalDecodingMessage) error {
	if !x.src.cfg.CaptureDDL {
		return nil
	}
	var msg struct {
		Command string `json:"command"`
		Objects []struct {
			Schema   *string `json:"schema"`
			Table    *string `json:"table"`
			Identity *string `json:"identity"`
		} `json:"objects"`
	}
	if err := json.Unmarshal(m.Content, &msg); err != nil {
		x.src.logger.Warn("ignoring a stele.ddl message that is not the event trigger's JSON", "err", err)
		return nil
	}
	after, err := record.Canonical(m.Content)
	if err != nil {
		return fmt.Errorf("ddl message: %w", err)
	}
	src := record.Source{Name: x.src.cfg.Name, Kind: "postgres", Database: x.src.database}
	object := msg.Command
	for i, o := range msg.Objects {
		if i == 0 && o.Identity != nil {
			object = *o.Identity
		}
		if o.Table != nil && o.Schema != nil {
			src.Schema, src.Table = *o.Schema, *o.Table
			if o.Identity != nil {
				object = *o.Identity
			}
			break
		}
	}
	key, _ := json.Marshal(map[string]string{"object": object})
	return x.add(&record.Record{Op: record.OpDDL, Source: src, Key: key, After: after})
}

// ddlState survives reconnections: the definitions seen per table and the
// relation-change records waiting for their transaction's end.
type ddlState struct {
	defs    map[string]*tableDef // by "schema.table"
	pending []*record.Record
}

type tableDef struct {
	sig     string
	version int64
}

func columnsSig(cols []*pglogrepl.RelationMessageColumn) string {
	var b strings.Builder
	for _, c := range cols {
		fmt.Fprintf(&b, "%q %d %d;", c.Name, c.DataType, c.TypeModifier)
	}
	return b.String()
}

func (x *stream) ddlState() *ddlState {
	if x.st.ddl == nil {
		x.st.ddl = &ddlState{defs: map[string]*tableDef{}}
	}
	return x.st.ddl
}

// relationVersion sets rel's schema version and, when its column list
// changed and no event trigger captures DDL, queues a ddl record for the
// end of the transaction.
func (x *stream) relationVersion(ctx context.Context, rel *relation) error {
	name := rel.schema + "." + rel.table
	ds := x.ddlState()
	sig := columnsSig(rel.cols)
	def, ok := ds.defs[name]
	switch {
	case !ok:
		def = &tableDef{sig: sig, version: 1}
		ds.defs[name] = def
	case def.sig != sig:
		def.sig = sig
		def.version++
		if !x.src.cfg.CaptureDDL && !rel.skip {
			r, err := x.relationRecord(ctx, rel, def.version)
			if err != nil {
				return err
			}
			ds.pending = append(ds.pending, r)
		}
	}
	rel.schemaRef = &record.SchemaRef{Subject: x.src.cfg.Name + "." + name, Version: def.version}
	return nil
}

func (x *stream) relationRecord(ctx context.Context, rel *relation, version int64) (*record.Record, error) {
	type column struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	cols := make([]column, len(rel.cols))
	for i, c := range rel.cols {
		cols[i].Name = c.Name
		if err := x.conn.QueryRow(ctx, "SELECT format_type($1, $2)", c.DataType, c.TypeModifier).Scan(&cols[i].Type); err != nil {
			return nil, fmt.Errorf("name the type of %s.%s.%s: %w", rel.schema, rel.table, c.Name, classify(err))
		}
	}
	after, err := json.Marshal(map[string]any{"columns": cols, "version": version})
	if err != nil {
		return nil, err
	}
	if after, err = record.Canonical(after); err != nil {
		return nil, err
	}
	key, _ := json.Marshal(map[string]string{"relation": rel.schema + "." + rel.table})
	x.src.logger.Info("table definition changed; recording a ddl record", "table", rel.schema+"."+rel.table, "version", version)
	return &record.Record{Op: record.OpDDL, Source: x.source(rel), Key: key, After: after}, nil
}

// flushRelationDDL adds the queued relation-change records to the end of
// the committing transaction.
func (x *stream) flushRelationDDL() error {
	ds := x.ddlState()
	pending := ds.pending
	ds.pending = nil
	for _, r := range pending {
		if err := x.add(r); err != nil {
			return err
		}
	}
	return nil
}
