// Package logstore is Stele's store of record: an append-only file of records,
// an RFC 6962 Merkle tree over them persisted level by level, and signed
// checkpoints (C2SP tlog-checkpoint). It assigns each record its seq, makes
// it durable with group commit, proves inclusion and consistency, and
// verifies a whole data directory.
//
// Files in the data directory:
//
//	records.log      frames, one per record, in seq order (the only source of truth)
//	records.idx      8-byte little-endian frame offset per seq (derived; rebuilt on demand)
//	tree/L00..L63    32-byte node hashes per tree level, L00 = leaf hashes (derived)
//	checkpoints.log  frames holding every signed checkpoint note, oldest first
//	keys/            checkpoint signing key (note format) and its verifier key
//
// A frame:
//
//	+----------------+----------------------+----------------------+
//	| length  uint32 | crc32c       uint32  | payload (length B)   |
//	| little endian  | of length || payload | = record.Encode(r)   |
//	+----------------+----------------------+----------------------+
//
// Why a plain file and not an LSM: the log is written once, in order, and
// read by position; an LSM's memtable, WAL and compactions would write each
// byte several times. docs/storage.md has the measurements behind the choice.
//
// Durability order: records.log is fsync'd before a batch is acknowledged;
// derived files are written after it and fsync'd before each checkpoint, so
// after a crash everything past the last checkpoint is recomputed from
// records.log, and a torn final frame (never acknowledged) is cut off.
package logstore
