// Package keystore keeps the data keys behind Stele's crypto-shredding:
// personal-data fields are sealed under a key derived from a subject key and a
// retention-period key, and destroying either key erases the data without
// touching the immutable log.
//
// Plaintext data keys never reach disk. Every key is stored wrapped by a
// MasterKey (a local AES-256-GCM key from a file or the environment, or
// HashiCorp Vault Transit), and unwrapped keys live only in a bounded LRU.
//
// Erasure is physical, not a tombstone: Destroy rewrites the one shard file
// that held the key without it (temp file, fsync, rename, directory fsync), so
// no file under the store directory keeps either the plaintext or the wrapped
// bytes. That is why this is 256 small files and not an LSM such as Pebble,
// whose compactions keep deleted values around for an unbounded time. The cost
// of an erasure is one shard, about 1/256 of the store.
//
// A kid is 16 bytes shown as 22 characters of unpadded base64url: the first
// byte names the shard, the other 15 are random. Stores written before
// showed kids as 32 hex digits; Key reads both forms, so envelopes sealed
// then stay readable. New keys fill one shard for a run of 1,024 before
// the least-filled shard is picked, so a group commit fsyncs one or two files
// rather than all 256, and shards stay balanced.
//
// # Directory layout
//
//	dir/LOCK            flock held while a Store is open
//	dir/CURRENT         name of the live generation directory, e.g. "g00000001"
//	dir/g00000001/MASTER    one frame: master id + a wrapped canary, checked on Open
//	dir/g00000001/DESTROYED frames of destroyed kids (random ids, not sensitive)
//	dir/g00000001/00.keys … ff.keys   key entries, sharded by the kid's first byte
//
// Rotate writes a whole new generation directory under the new master and
// switches CURRENT with an atomic rename, so a crash leaves either the old or
// the new generation, never a mix; Open removes any other generation.
//
// # Frame format (all files)
//
//	+-----------------+-----------------+----------------------+
//	| length u32 LE   | crc32c u32 LE   | body (length bytes)  |
//	+-----------------+-----------------+----------------------+
//
//	key body:       version=1 u8 | kind u8 | kid [16] | nameLen u16 | name |
//	                masterIDLen u8 | masterID | wrappedLen u16 | wrapped
//	destroyed body: version=1 u8 | kid [16]
//	master body:    version=1 u8 | masterIDLen u8 | masterID | wrappedLen u16 | wrapped canary
//
// The wrapped plaintext is kid | kind | key | name, so a wrapped key moved to
// another entry on disk fails to unwrap instead of silently answering for it.
//
// A frame that runs past the end of a file, or a bad final frame, is a torn
// write from a crash: it was never made durable by Sync, so never
// acknowledged, and Open cuts it. A bad frame followed by more data is
// corruption and Open refuses the store.
package keystore
