// Package projection maintains read models ("projections") derived from the
// log: each one folds the records that match a filter into a value per
// group key, kept current as records are appended and rebuilt by replaying
// the log.
//
// A projection is declared in the configuration (Definition): a CEL filter
// over the record, a CEL key expression giving the group key, and a fold —
// one of the built-in kinds state, count, last_change_per_field, or reduce
// with a CEL value expression over the previous state and the record. All
// expressions are compiled when the set is built (Compile), so a typo is
// reported at start-up naming the projection, the field and the CEL error.
//
// Projections are derived data, like the index: they live in one Pebble
// database under <data>/projections/ and can be deleted and rebuilt at any
// time. Each projection's applied watermark (how many leading log records it
// has folded) is written in the same atomic batch as the state changes those
// records caused, so after a crash a projection resumes exactly where its
// last durable batch ended and never applies a record twice. Writes are not
// fsync'd: the log is the write-ahead log, and a lost tail is replayed.
//
// Key layout (names are restricted to [a-z0-9_-], so the 0x00 separator
// cannot occur inside one):
//
//	'm' name                 -> meta JSON {hash, applied, keys, skipped}
//	'd' name 0x00 group-key  -> the folded value, canonical JSON
//
// Determinism: a rebuilt projection equals the live one byte for byte. Every
// fold step reads its previous value back from its encoded JSON form, never
// from an in-memory value, so how records were split into batches (small
// live batches, large replay batches) cannot change a result.
//
// Personal data: a record's images hold their PII fields sealed in one
// "$pii" member ({"$pii":{"email,name":"…"}}, or a {"$sealed": …} in place
// of each field in records sealed before that form). Projections see only
// the stored form and never decrypt: a filter or key over a sealed field
// finds it absent (or the old envelope), a state fold keeps the envelope, and crypto-shredding a key leaves such values unreadable in
// the projection exactly as in the log. Group keys should not be PII: they
// appear in URLs.
package projection
