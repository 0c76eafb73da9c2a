package mysql

import (
	"strings"
)

// A light reader of the statements the binlog logs as text: enough to
// tell a transaction's BEGIN and COMMIT from DDL, and which tables a DDL
// statement names (for the table filter and the record's source). It is
// not a SQL parser; a statement it does not recognise is recorded under
// its first words.

type tableName struct{ db, table string }

type ddlTarget struct {
	verb     string // "CREATE TABLE", "TRUNCATE", "GRANT", …
	tables   []tableName
	database string // CREATE/DROP/ALTER DATABASE
}

type token struct {
	text   string
	quoted bool // `identifier`
	punct  byte // '.', ',', … (0 for words)
}

// tokenize splits a statement into words, quoted identifiers and
// punctuation, skipping comments (the body of an executable comment
// /*! … */ is kept) and string literals.
func tokenize(q string, limit int) []token {
	var out []token
	i := 0
	for i < len(q) && len(out) < limit {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case strings.HasPrefix(q[i:], "/*!") || strings.HasPrefix(q[i:], "/*M!"):
			i += strings.IndexByte(q[i:], '!') + 1
			for i < len(q) && q[i] >= '0' && q[i] <= '9' {
				i++
			}
		case strings.HasPrefix(q[i:], "/*"):
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return out
			}
			i += end + 4
		case strings.HasPrefix(q[i:], "*/"):
			i += 2
		case c == '#' || strings.HasPrefix(q[i:], "-- "):
			end := strings.IndexByte(q[i:], '\n')
			if end < 0 {
				return out
			}
			i += end + 1
		case c == '`':
			var b strings.Builder
			j := i + 1
			for j < len(q) {
				if q[j] == '`' {
					if j+1 < len(q) && q[j+1] == '`' {
						b.WriteByte('`')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(q[j])
				j++
			}
			out = append(out, token{text: b.String(), quoted: true})
			i = j + 1
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(q) && q[j] != c {
				if q[j] == '\\' {
					j++
				}
				j++
			}
			out = append(out, token{punct: c})
			i = j + 1
		case isWordByte(c):
			j := i
			for j < len(q) && isWordByte(q[j]) {
				j++
			}
			out = append(out, token{text: q[i:j]})
			i = j
		default:
			out = append(out, token{punct: c})
			i++
		}
	}
	return out
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

func (t token) is(word string) bool {
	return !t.quoted && t.punct == 0 && strings.EqualFold(t.text, word)
}

// firstWords is the statement's verb: its first word in capitals, or the
// first two for START TRANSACTION, ROLLBACK TO, RELEASE SAVEPOINT and XA.
func firstWords(q []byte) string {
	toks := tokenize(string(q[:min(len(q), 256)]), 3)
	if len(toks) == 0 || toks[0].punct != 0 {
		return ""
	}
	w := strings.ToUpper(toks[0].text)
	switch w {
	case "START", "ROLLBACK", "RELEASE", "XA":
		if len(toks) > 1 && toks[1].punct == 0 && !toks[1].quoted {
			return w + " " + strings.ToUpper(toks[1].text)
		}
	}
	return w
}

// parseDDL reads which tables or database a statement names; defaultDB is
// the session's database.
func parseDDL(q []byte, defaultDB string) ddlTarget {
	toks := tokenize(string(q), 4096)
	var t ddlTarget
	p := &ddlParser{toks: toks, def: defaultDB}
	if len(toks) == 0 {
		return t
	}
	first := strings.ToUpper(toks[0].text)
	t.verb = first
	p.i = 1
	switch first {
	case "CREATE", "ALTER", "DROP":
		p.skip("OR", "REPLACE")
		p.skipAny("ONLINE", "OFFLINE", "IGNORE", "TEMPORARY", "UNIQUE", "FULLTEXT", "SPATIAL")
		switch {
		case p.accept("TABLE"):
			t.verb = first + " TABLE"
			p.skipIfExists()
			for {
				if n, ok := p.qname(); ok {
					t.tables = append(t.tables, n)
				}
				if first != "DROP" || !p.acceptPunct(',') {
					break
				}
			}
		case p.accept("DATABASE") || p.accept("SCHEMA"):
			t.verb = first + " DATABASE"
			p.skipIfExists()
			if p.i < len(p.toks) && p.toks[p.i].punct == 0 {
				t.database = p.toks[p.i].text
			}
		case p.accept("INDEX"):
			t.verb = first + " INDEX"
			p.skipIfExists()
			p.qname() // the index
			if p.accept("ON") {
				if n, ok := p.qname(); ok {
					t.tables = append(t.tables, n)
				}
			}
		default:
			if p.i < len(p.toks) && p.toks[p.i].punct == 0 {
				t.verb = first + " " + strings.ToUpper(p.toks[p.i].text)
			}
		}
	case "RENAME":
		if p.accept("TABLE") || p.accept("TABLES") {
			t.verb = "RENAME TABLE"
			for {
				if n, ok := p.qname(); ok {
					t.tables = append(t.tables, n)
				}
				if !p.accept("TO") {
					break
				}
				if n, ok := p.qname(); ok {
					t.tables = append(t.tables, n)
				}
				if !p.acceptPunct(',') {
					break
				}
			}
		}
	case "TRUNCATE":
		p.accept("TABLE")
		if n, ok := p.qname(); ok {
			t.tables = append(t.tables, n)
		}
	}
	return t
}

type ddlParser struct {
	toks []token
	i    int
	def  string
}

func (p *ddlParser) accept(word string) bool {
	if p.i < len(p.toks) && p.toks[p.i].is(word) {
		p.i++
		return true
	}
	return false
}

func (p *ddlParser) acceptPunct(c byte) bool {
	if p.i < len(p.toks) && p.toks[p.i].punct == c {
		p.i++
		return true
	}
	return false
}

// skip consumes the words in order when all are there.
func (p *ddlParser) skip(words ...string) {
	for j, w := range words {
		if p.i+j >= len(p.toks) || !p.toks[p.i+j].is(w) {
			return
		}
	}
	p.i += len(words)
}

func (p *ddlParser) skipAny(words ...string) {
	for p.i < len(p.toks) {
		found := false
		for _, w := range words {
			if p.toks[p.i].is(w) {
				found = true
			}
		}
		if !found {
			return
		}
		p.i++
	}
}

func (p *ddlParser) skipIfExists() {
	p.skip("IF", "NOT", "EXISTS")
	p.skip("IF", "EXISTS")
}

// qname reads [db.]name.
func (p *ddlParser) qname() (tableName, bool) {
	if p.i >= len(p.toks) || p.toks[p.i].punct != 0 {
		return tableName{}, false
	}
	a := p.toks[p.i].text
	p.i++
	if p.acceptPunct('.') && p.i < len(p.toks) && p.toks[p.i].punct == 0 {
		b := p.toks[p.i].text
		p.i++
		return tableName{a, b}, true
	}
	return tableName{p.def, a}, true
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// enumLabels reads the labels of an information_schema COLUMN_TYPE
// "enum('a','b')" or "set('x','y')" (nil for other types).
func enumLabels(typ string) []string {
	l := strings.ToLower(typ)
	if !strings.HasPrefix(l, "enum(") && !strings.HasPrefix(l, "set(") {
		return nil
	}
	body := typ[strings.IndexByte(typ, '(')+1:]
	var out []string
	for i := 0; i < len(body); i++ {
		if body[i] != '\'' {
			continue
		}
		var b strings.Builder
		j := i + 1
		for j < len(body) {
			if body[j] == '\'' {
				if j+1 < len(body) && body[j+1] == '\'' {
					b.WriteByte('\'')
					j += 2
					continue
				}
				break
			}
			b.WriteByte(body[j])
			j++
		}
		out = append(out, b.String())
		i = j
	}
	return out
}
