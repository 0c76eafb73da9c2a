// Package privacy seals personal data before it reaches the immutable log,
// reveals it to readers according to their role, and erases it by
// destroying keys (crypto-shredding) while the log still verifies.
//
// # Sealing
//
// A record's subject in the schema registry is its source name, the
// database schema when the source has one, and the table
// (crm.public.customers). When that subject has a schema, the record's
// images are validated against it, and the fields marked x-pii are taken
// out of each image and sealed together, one envelope per data group (a
// subject and a retention period), under the image's "$pii" member
// (compact.go draws the format):
//
//	{"$pii":{"email,name,phone":"<base64url: version, kids, salt, ciphertext, tag>"},"id":7}
//
// The field key is HKDF-SHA256 over the subject key and the retention
// period key together (double encryption: destroying either erases the
// fields), and the AEAD's associated data binds the record id, the image,
// the field list and both kids, so an envelope moved to another record or
// image, or given other fields or keys, fails authentication. The envelope
// is what the Merkle leaf hashes, so erasure never changes the log. The
// kids are written once per envelope, in binary: per field, two kids in
// text were most of what sealing added to a record. Records sealed before
// hold one {"$sealed":{alg,ct,kid}} per field (format 1, kids in text, in
// hex for the oldest); they are still read, masked, erased and re-indexed.
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
