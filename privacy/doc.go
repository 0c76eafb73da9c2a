// Package privacy seals personal data before it reaches the immutable log,
// reveals it to readers according to their role, and erases it by
// destroying keys (crypto-shredding) while the log still verifies.
//
// # Sealing
//
// A record's subject in the schema registry is its source name, the
// database schema when the source has one, and the table
// (crm.public.customers). When that subject has a schema, the record's
// images are validated against it, and every field marked x-pii is
// replaced by an envelope:
//
//	{"$sealed":{"alg":"A256GCM","ct":"<base64 nonce‖ciphertext‖tag>","kid":"<subject kid>.<period kid>"}}
//
// The field key is HKDF-SHA256 over the subject key and the retention
// period key together (double encryption: destroying either erases the
// field), and the AEAD's associated data binds the record id, the field's
// path ("after.address.street") and the kid, so an envelope moved to
// another record or field fails authentication. The envelope is what the
// Merkle leaf hashes, so erasure never changes the log. Kids are short
// (keystore: 22 base64url characters) because every sealed field carries
// two; envelopes from earlier versions name them in hex, which still reads.
//
// Subject keys are named by a keyed hash of the data group and the subject
// value, so neither the keystore nor the index holds the value itself.
// Period keys are named "<retention>/<YYYY-MM>" from occurred_at (UTC), or
// "none" for groups kept until erased.
//
// # Reading
//
// Auditors and admins see sealed fields in clear, analysts see the field's
// mask, services see the envelope; once a key is gone every role sees
// {"$erased":true}.
package privacy
