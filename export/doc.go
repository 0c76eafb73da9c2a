// Package export writes filtered slices of a Stele log as JSON Lines, CSV or
// Parquet files, each with a proof sidecar that lets a recipient verify the
// export offline, and verifies such exports. It does no HTTP: the API and the
// CLI drive it.
//
// # Bundle
//
// An export is two files: the data file (FILE) and its proof (FILE.proof.json).
//
// The data file holds the records as stored — sealed personal-data envelopes
// stay sealed — one row per record, in ascending seq. Every row carries every
// field of the record losslessly, so the verifier rebuilds the exact stored
// bytes (record.Encode: 17-byte header + canonical body) from the row alone
// and recomputes the Merkle leaf hash. No base64 copy of the leaf is carried:
// it would double the file, and a copy next to readable columns proves
// nothing about those columns unless they are compared anyway. Instead the
// verifier re-renders each row from the record it proved and requires the
// row to be exactly that rendering, so no column — derived ones such as
// actor_id included — can be altered unnoticed.
//
// The proof is one JSON object, written and read as a stream so exports of
// millions of records need constant memory:
//
//	{"stele_export":1, "format":"csv", "filter":{…}, "complete":false,
//	 "size":N,                  // the export covers seqs below N
//	 "verifier_key":"…",        // note verifier key of the log
//	 "checkpoint":"…",          // signed checkpoint note, tree size M >= N
//	 "consistency":["…",…],     // complete exports only: tree N is a prefix of M
//	 "leaves":[{"seq":3,"leaf_hash":"…","proof":["…",…]}, …],
//	 "records":K}
//
// A filtered export ("complete": false) carries an RFC 6962 inclusion proof
// of each row against the checkpoint. An export without any filter
// ("complete": true) holds every seq below N; it carries only the leaf
// hashes, and the verifier rebuilds the root of tree N from the rows, which
// also proves that no row is missing, then checks the consistency proof from
// N to the signed checkpoint's size.
//
// What a filtered export cannot prove: that no matching row was left out of
// both files together. The log commits to records, not to query answers.
package export
