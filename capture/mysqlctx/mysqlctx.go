// Package mysqlctx lets a Go application tell Stele who made the changes of
// a MySQL or MariaDB transaction, and why, through database/sql with any
// driver. Call SetContext inside the transaction, before or after its
// writes: every change of that transaction captured by Stele's mysql
// source then carries the actor and cause (a statement's own
// /* stele {...} */ comment still wins for that statement's rows).
//
// The context table must exist in the application's database: create it
// once with CreateTable, or let the source do it (create_context_table:
// true). Other languages need no helper; run this one statement inside the
// transaction:
//
//	INSERT INTO stele_context (conn, actor, cause)
//	VALUES (CONNECTION_ID(), '{"id":"alice","app":"crm"}', '{"type":"ticket","id":"T-42"}')
//	ON DUPLICATE KEY UPDATE actor = VALUES(actor), cause = VALUES(cause), n = n + 1;
//
// The table keeps one row per connection, so it never grows past the
// number of connections; a rolled-back transaction leaves nothing behind
// in the binlog, and its context with it. Actor members Stele knows are id,
// type, app, ip and request_id; any other member is kept as given.
package mysqlctx

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
)

// Table is the context table's name.
const Table = "stele_context"

// TableDDL creates the context table in the current database.
const TableDDL = `CREATE TABLE IF NOT EXISTS stele_context (
  conn BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  actor TEXT NULL,
  cause TEXT NULL,
  n BIGINT UNSIGNED NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`

// Statement is the statement SetContext runs, with the actor and cause
// JSON as its two parameters.
const Statement = `INSERT INTO stele_context (conn, actor, cause) VALUES (CONNECTION_ID(), ?, ?)
ON DUPLICATE KEY UPDATE actor = VALUES(actor), cause = VALUES(cause), n = n + 1`

// Execer is what SetContext needs: a *sql.Tx (or *sql.Conn inside a
// transaction).
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// CreateTable creates the context table when it is missing.
func CreateTable(ctx context.Context, db Execer) error {
	if _, err := db.ExecContext(ctx, TableDDL); err != nil {
		return fmt.Errorf("create the stele context table: %w", err)
	}
	return nil
}

// SetContext attaches actor and cause (either may be nil) to the changes of
// tx.
func SetContext(ctx context.Context, tx Execer, actor, cause map[string]any) error {
	a, c, err := encode(actor, cause)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, Statement, a, c); err != nil {
		return fmt.Errorf("write the stele context row (does the %s table exist? see mysqlctx.CreateTable): %w", Table, err)
	}
	return nil
}

// Comment returns the leading comment that gives one statement its own
// actor and cause: Comment(actor, nil) + "UPDATE …". The comment reaches
// Stele only where the binlog keeps statement text (MariaDB's default;
// MySQL with binlog_rows_query_log_events = ON) and the client does not
// strip comments.
func Comment(actor, cause map[string]any) (string, error) {
	m := map[string]any{}
	if actor != nil {
		m["actor"] = actor
	}
	if cause != nil {
		m["cause"] = cause
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode stele context: %w", err)
	}
	// "*/" inside a string would end the comment; \/ is the same JSON.
	return "/* stele " + strings.ReplaceAll(string(b), "*/", `*\/`) + " */ ", nil
}

func encode(actor, cause map[string]any) (a, c any, err error) {
	if actor != nil {
		b, err := json.Marshal(actor)
		if err != nil {
			return nil, nil, fmt.Errorf("encode stele actor: %w", err)
		}
		a = string(b)
	}
	if cause != nil {
		b, err := json.Marshal(cause)
		if err != nil {
			return nil, nil, fmt.Errorf("encode stele cause: %w", err)
		}
		c = string(b)
	}
	return a, c, nil
}
