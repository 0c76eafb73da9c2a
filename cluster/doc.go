// Package cluster runs a Stele log across machines on a NATS JetStream
// cluster, with no consensus protocol of its own (docs/cluster.md):
//
//   - producers (the HTTP API, capture sources) call Node.Append, the same
//     Append the single-machine store has; it publishes each candidate
//     record to the ingest stream (R3, Nats-Msg-Id = record id) and returns
//     once the node's own copy of the log holds every one of them;
//   - one writer per log, elected through a KV lease with revision
//     compare-and-set, sequences the candidates and publishes each batch to
//     the log stream (R3) with Nats-Expected-Last-Sequence, so JetStream
//     refuses a deposed writer's batch and the log cannot fork;
//   - every node follows the log stream into its local store
//     (logstore.Store.AppendSequenced), checking its root against the
//     checkpoint the writer signed for each batch;
//   - a log is one partition (Config.Log): partitions share the NATS
//     servers and nothing else, and Partitions lists them with their
//     writers and backlogs.
//
// Log stream message (one per batch; stream sequence k is the k-th batch):
//
//	headers  Stele-First: seq of the batch's first record
//	         Stele-Count: number of records
//	         Nats-Msg-Id: first "-" first 16 hex digits of SHA-256(body)
//	body     uvarint len, signed checkpoint note after the batch,
//	         then per record: uvarint len, stored bytes (record.Encode)
//
// Ingest stream message (one per candidate record):
//
//	headers  Nats-Msg-Id: the record id
//	body     the record's encoded body (record.AppendBody), personal data
//	         already sealed
package cluster
