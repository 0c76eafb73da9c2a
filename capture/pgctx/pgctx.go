// Package pgctx lets a Go application tell Stele who made the changes of a
// PostgreSQL transaction, and why. Call SetContext inside the transaction,
// before or after its writes: every change of that transaction captured by
// Stele's postgres source then carries the actor and cause.
//
// Other languages need no helper; run this one statement inside the
// transaction (the first argument, true, makes the message transactional, so
// a rolled-back transaction leaves nothing behind):
//
//	SELECT pg_logical_emit_message(true, 'stele', '{"actor":{"id":"alice","app":"crm"},"cause":{"type":"ticket","description":"T-42"}}');
//
// The content is a JSON object with optional "actor" and "cause" objects.
// Actor members Stele knows are id, type, app, ip and request_id; any other
// member is kept as given.
package pgctx

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Prefix is the logical-message prefix Stele listens for.
const Prefix = "stele"

// Message is the content of a context message.
type Message struct {
	Actor map[string]any `json:"actor,omitempty"`
	Cause map[string]any `json:"cause,omitempty"`
}

// SetContext attaches actor and cause (either may be nil) to the changes of
// tx by emitting a transactional logical decoding message with prefix
// "stele".
func SetContext(ctx context.Context, tx pgx.Tx, actor map[string]any, cause map[string]any) error {
	content, err := json.Marshal(Message{Actor: actor, Cause: cause})
	if err != nil {
		return fmt.Errorf("encode stele context message: %w", err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2::text)", Prefix, string(content)); err != nil {
		return fmt.Errorf("emit stele context message (pg_logical_emit_message needs wal_level = logical): %w", err)
	}
	return nil
}
