package privacy

import (
	"bytes"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/stele/stele/record"
)

// refuseEnvelopes fails when one of r's images holds what readers take for
// sealed personal data: a top-level "$pii" member or a {"$sealed":…}
// object. Only Seal writes those; one a client or a source sent would be
// opened by every reader, whatever the table's schema (or lack of one),
// and could show a forged "erased" value or a decryption failure for a
// record that never held personal data.
//
// Neither marker can occur inside a JSON string (its quotes would be
// escaped), so a plain bytes.Contains decides for nearly every record; and
// both hold a '$', which most images lack: one scan for that byte spares
// the two searches.
func refuseEnvelopes(r *record.Record) error {
	for side, img := range [numSides][]byte{r.Key, r.Before, r.After} {
		if bytes.IndexByte(img, '$') < 0 {
			continue
		}
		if bytes.Contains(img, compactMarker) && hasTopMember(img, compactMember) {
			return &record.FieldError{Field: sideNames[side] + "." + compactMember, Reason: "is reserved for sealed personal data"}
		}
		if bytes.Contains(img, sealedMarker) {
			return &record.FieldError{Field: sealedPath(img, sideNames[side]), Reason: `holds a {"$sealed":…} object, which is reserved for sealed personal data`}
		}
	}
	return nil
}

// sealedPath names the first {"$sealed":…} object of img, or the side
// when the walk cannot (the object is malformed).
func sealedPath(img []byte, side string) string {
	first := ""
	_, err := walkEnvelopes(nil, jsontext.Value(bytes.Clone(img)), side, func(path string, _ envelope, raw jsontext.Value) []byte {
		if first == "" {
			first = path
		}
		return raw
	})
	if err != nil || first == "" {
		return side
	}
	return first
}
