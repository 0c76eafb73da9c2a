package publish

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/stele/stele/record"
)

// DefaultSubjectPrefix is the first tokens of every lineage subject.
const DefaultSubjectPrefix = "stele.lineage"

// Token makes s safe as one NATS subject token. NATS splits subjects on
// '.', treats '*' and '>' as wildcards and forbids whitespace, so those
// characters, '%' itself, and control characters are percent-encoded as the
// %XX of each of their UTF-8 bytes (as in URLs: "public.users" becomes
// "public%2Eusers", "a b" becomes "a%20b"). Everything else is kept. The
// empty string, which NATS cannot carry as a token, becomes "%" alone: no
// escape produces a bare '%', so the mapping stays reversible
// (url.PathUnescape decodes every token but the empty one).
func Token(s string) string {
	if s == "" {
		return "%"
	}
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		if !escaped(r) {
			b.WriteRune(r)
			continue
		}
		var buf [utf8.UTFMax]byte
		n := utf8.EncodeRune(buf[:], r)
		for _, c := range buf[:n] {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

const hexDigits = "0123456789ABCDEF"

func needsEscape(s string) bool {
	for _, r := range s {
		if escaped(r) {
			return true
		}
	}
	return false
}

func escaped(r rune) bool {
	switch r {
	case '.', '*', '>', '%':
		return true
	}
	// Invalid UTF-8 decodes as RuneError and is escaped as its replacement,
	// so a subject is always valid UTF-8.
	return r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r)
}

// Subject is the subject a record is published on:
// <prefix>.<source>.<table>.<op>, each name a Token.
func Subject(prefix string, r *record.Record) string {
	return prefix + "." + Token(r.Source.Name) + "." + Token(r.Source.Table) + "." + Token(string(r.Op))
}
