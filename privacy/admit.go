package privacy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/stele/stele/record"
	"github.com/stele/stele/schema"
)

// Admit checks, before a client's record reaches the log, what the sealer
// must be able to trust in it, closing the ways a client could place
// personal data beside its table's schema:
//
//   - a schema reference the client sent is checked against the registry
//     (its subject must be the record's table, and the version must exist)
//     and then dropped: the stored reference is the one the sealer sets, of
//     the schema the record was validated and sealed under, never the
//     client's word;
//   - a record naming a table whose schema is registered under another
//     database schema (source.schema left out or different) is refused, as
//     it would be listed with that table while escaping its schema.
//
// schemas may be nil (no registry): then every reference is refused.
// Errors are *record.FieldError naming the field.
func Admit(schemas Schemas, r *record.Record) error {
	if schemas == nil && r.Schema == nil {
		// Nothing to check, and naming the subject would cost an
		// allocation for every record of every batch.
		return nil
	}
	subject := SubjectName(r.Source)
	if ref := r.Schema; ref != nil {
		switch {
		case ref.Subject != subject:
			return &record.FieldError{Field: "schema.subject", Reason: fmt.Sprintf("%q is not the subject of this record's table (%q); leave schema out, the server sets it", ref.Subject, subject)}
		case schemas == nil:
			return &record.FieldError{Field: "schema", Reason: "this server has no schema registry to check it against; leave schema out"}
		}
		if _, err := schemas.Version(ref.Subject, int(ref.Version)); err != nil {
			if errors.Is(err, schema.ErrNotFound) {
				return &record.FieldError{Field: "schema.version", Reason: fmt.Sprintf("the registry holds no version %d of subject %q; leave schema out, the server sets it", ref.Version, ref.Subject)}
			}
			return fmt.Errorf("privacy: check schema reference: %w", err)
		}
		r.Schema = nil
	}
	if schemas == nil {
		return nil
	}
	if _, err := schemas.Latest(subject); err == nil || !errors.Is(err, schema.ErrNotFound) {
		return nil // its own schema applies (or the registry failed, and sealing will say so)
	}
	for _, other := range schemas.Subjects() {
		if sameTable(other, r.Source) {
			return &record.FieldError{Field: "source.schema", Reason: fmt.Sprintf("table %s of source %s has its schema under subject %q; name the same source.schema so the record goes through it", r.Source.Table, r.Source.Name, other)}
		}
	}
	return nil
}

// sameTable reports whether subject names src's table under some database
// schema (or none): "<source>.<schema>.<table>" or "<source>.<table>".
func sameTable(subject string, src record.Source) bool {
	rest, ok := strings.CutPrefix(subject, src.Name+".")
	if !ok {
		return false
	}
	if rest == src.Table {
		return true
	}
	mid, ok := strings.CutSuffix(rest, "."+src.Table)
	return ok && mid != "" && !strings.Contains(mid, ".")
}
