// Package publish publishes Stele's live lineage stream: every record
// appended to the log becomes one message on NATS JetStream, in log order
// and exactly once, as a CloudEvents 1.0 JSON event (structured mode) whose
// data is the record itself or, optionally, a Debezium-style change event.
//
// The Publisher follows the log instead of sitting on the append path: it
// reads records by seq from the store on its own goroutine, woken by the
// store's change notification. A slow or unreachable NATS therefore never
// blocks or loses an append; it only builds a backlog that the publisher
// catches up from the log once NATS answers again. The same holds for a
// burst of ingest: while the log spends most of its time appending, the
// publisher holds off (at most Config.MaxDelay) and catches up after, so
// that the stream does not take the machine from the appends.
//
// Order and exactly-once delivery come from the stream itself, not from
// local bookkeeping alone. Every message carries the header Stele-Seq (the
// record's seq) and Nats-Msg-Id (the record id, for JetStream's duplicate
// window), and is published with Nats-Expected-Last-Sequence set to the
// stream sequence it must follow, so a lost message makes every later one
// in flight fail rather than land out of order. After any failure, and at
// start, the publisher resynchronises from the stream's last message
// (its Stele-Seq header, checked against the log's record id at that seq)
// and continues from the next seq. A small cursor file covers the case in
// which the stream has no messages left to read (all expired).
//
// Subjects are stele.lineage.<source>.<table>.<op>; see Token for how
// names that NATS cannot carry in a subject token are escaped.
//
// Embedded runs nats-server in-process with JetStream, the default for a
// single machine; an external cluster is reached by URL instead.
package publish
