package postgres

// # DDL and schema versions
//
// With Config.CaptureDDL, set-up installs the function stele_ddl_capture()
// and the event triggers stele_ddl_capture on ddl_command_end and
// stele_ddl_drop on sql_drop (when missing; creating event triggers needs a
// superuser). The function emits a transactional logical message with prefix "stele.ddl"
// whose content is {"command": tag, "objects": [{"command_tag",
// "object_type", "schema", "table", "identity"}…], "statement":
// current_query()}. The stream turns each such message into an op "ddl"
// record: source.schema/table name the first affected table (empty when
// none), key {"object": identity of the first object, else the command
// tag}, after the message itself. It is numbered within its transaction
// like row changes (the message sits in the WAL), so replay yields the same
// ids. Every DDL command of the database is recorded, including those on
// tables outside the publication. DROP commands are sent from sql_drop,
// with the dropped objects (those named and those dropped with them by
// CASCADE, the named first), since ddl_command_end knows none; a DROP …
// IF EXISTS that drops nothing leaves no record.
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
// for the table since the process started (1 for the first), so they
// restart at 1 after a Stele restart, and a replayed record keeps whichever
// version was stored first. For a table with a schema in the registry
// (package schema), the privacy layer replaces this with the registry's
// subject and version, which do not restart.

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
	IF tg_event = 'sql_drop' THEN
		-- Only DROP commands: the objects an ALTER drops (a column) are
		-- reported by its ddl_command_end message.
		IF tg_tag NOT LIKE 'DROP %' THEN
			RETURN;
		END IF;
		SELECT coalesce(json_agg(json_build_object(
			'command_tag', tg_tag,
			'object_type', d.object_type,
			'schema', d.schema_name,
			'table', CASE WHEN d.object_type = 'table' THEN d.object_name END,
			'identity', d.object_identity) ORDER BY d.original DESC), '[]'::json)
		INTO objs
		FROM pg_catalog.pg_event_trigger_dropped_objects() d
		WHERE d.original OR d.normal;
	ELSE
		-- DROP commands report no objects here; sql_drop sent them.
		IF tg_tag LIKE 'DROP %' THEN
			RETURN;
		END IF;
		SELECT coalesce(json_agg(json_build_object(
			'command_tag', d.command_tag,
			'object_type', d.object_type,
			'schema', d.schema_name,
			'table', CASE WHEN d.classid = 'pg_catalog.pg_class'::regclass
				THEN (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = d.objid AND c.relkind IN ('r', 'p')) END,
			'identity', d.object_identity)), '[]'::json)
		INTO objs
		FROM pg_catalog.pg_event_trigger_ddl_commands() d;
	END IF;
	PERFORM pg_catalog.pg_logical_emit_message(true, 'stele.ddl',
		pg_catalog.json_build_object('command', tg_tag, 'objects', objs, 'statement', pg_catalog.current_query())::text);
END
$stele$`

// ddlTriggers are the event triggers running stele_ddl_capture(), by name.
func ddlTriggers() []struct{ name, event string } {
	return []struct{ name, event string }{
		{"stele_ddl_capture", "ddl_command_end"},
		{"stele_ddl_drop", "sql_drop"},
	}
}

// ddlFunctionBody is the function's source as pg_proc.prosrc holds it.
func ddlFunctionBody() string {
	_, body, _ := strings.Cut(ddlFunction, "$stele$")
	body, _, _ = strings.Cut(body, "$stele$")
	return body
}

// setupDDL installs the DDL event triggers when Config.CaptureDDL asks for
// it. The function is replaced whenever its body differs from this
// version's, before any trigger is created, so an installation made by an
// earlier version (ddl_command_end only) gets the sql_drop half before its
// trigger exists: the old body would fail inside sql_drop and with it
// every DROP.
func (s *Source) setupDDL(ctx context.Context, conn *pgx.Conn) error {
	if !s.cfg.CaptureDDL {
		return nil
	}
	if !s.cfg.SkipSetup {
		// Replaced only when it differs: replacing it is itself DDL, which
		// the installed trigger would record at every start.
		var current string
		err := conn.QueryRow(ctx, "SELECT prosrc FROM pg_catalog.pg_proc WHERE proname = 'stele_ddl_capture' AND pronargs = 0").Scan(&current)
		if err != nil && err != pgx.ErrNoRows {
			return fmt.Errorf("look up function stele_ddl_capture(): %w", classify(err))
		}
		if current != ddlFunctionBody() {
			if _, err := conn.Exec(ctx, ddlFunction); err != nil {
				return fmt.Errorf("create function stele_ddl_capture(): %w", classify(err))
			}
			s.logger.Info("set-up: installed function stele_ddl_capture()")
		}
	}
	for _, trig := range ddlTriggers() {
		var enabled string
		err := conn.QueryRow(ctx, "SELECT evtenabled::text FROM pg_event_trigger WHERE evtname = $1", trig.name).Scan(&enabled)
		switch {
		case err == nil && enabled == "D":
			s.logger.Warn("set-up: DDL event trigger is disabled; its DDL is not captured until ALTER EVENT TRIGGER … ENABLE", "trigger", trig.name, "event", trig.event)
			continue
		case err == nil:
			s.logger.Info("set-up: DDL event trigger exists", "trigger", trig.name)
			continue
		case err != pgx.ErrNoRows:
			return fmt.Errorf("look up event trigger %s: %w", trig.name, classify(err))
		case s.cfg.SkipSetup && trig.event == "sql_drop":
			s.logger.Warn("set-up: event trigger stele_ddl_drop is missing and set-up is skipped; DROP commands are recorded without their objects")
			continue
		case s.cfg.SkipSetup:
			return fmt.Errorf("%w: capture_ddl is on but the event trigger %s does not exist and set-up is skipped: let Stele create it (as a superuser) or turn capture_ddl off", ErrConfig, trig.name)
		}
		if _, err := conn.Exec(ctx, "CREATE EVENT TRIGGER "+trig.name+" ON "+trig.event+" EXECUTE FUNCTION stele_ddl_capture()"); err != nil {
			return fmt.Errorf("create event trigger %s (needs a superuser): %w", trig.name, classify(err))
		}
		s.logger.Info("set-up: created DDL event trigger", "trigger", trig.name, "event", trig.event, "function", "stele_ddl_capture()")
	}
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
