package query

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stele/stele/record"
)

// errFoldBody: a stored body the fold reader cannot walk; the caller falls
// back to the full decoder, which says what is wrong with it.
var errFoldBody = errors.New("not a JSON object")

// foldFields returns the op, after and occurred_at members of a stored
// record body (JSON, validated when it was appended) by walking its top
// level only: encoding/json validates and walks every byte of every member
// (before, actor, tx, …) first, which was most of a table walk's CPU.
func foldFields(body []byte) (op record.Op, after json.RawMessage, occurred time.Time, err error) {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return "", nil, time.Time{}, errFoldBody
	}
	i++
	for first := true; ; first = false {
		i = skipSpace(body, i)
		if first && i < len(body) && body[i] == '}' {
			return op, after, occurred, nil
		}
		if i >= len(body) || body[i] != '"' {
			return "", nil, time.Time{}, errFoldBody
		}
		kEnd := skipString(body, i)
		if kEnd < 0 {
			return "", nil, time.Time{}, errFoldBody
		}
		key := body[i+1 : kEnd-1]
		i = skipSpace(body, kEnd)
		if i >= len(body) || body[i] != ':' {
			return "", nil, time.Time{}, errFoldBody
		}
		i = skipSpace(body, i+1)
		vEnd := skipValue(body, i)
		if vEnd < 0 {
			return "", nil, time.Time{}, errFoldBody
		}
		v := body[i:vEnd]
		// The three names hold no escapes, so a key with one is another.
		switch string(key) {
		case "op":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return "", nil, time.Time{}, err
			}
			op = record.Op(s)
		case "after":
			if string(v) != "null" {
				after = v
			}
		case "occurred_at":
			if err := occurred.UnmarshalJSON(v); err != nil {
				return "", nil, time.Time{}, err
			}
		}
		i = skipSpace(body, vEnd)
		if i < len(body) && body[i] == ',' {
			i++
			continue
		}
		if i < len(body) && body[i] == '}' {
			return op, after, occurred, nil
		}
		return "", nil, time.Time{}, errFoldBody
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] ('"'), or
// -1.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index after the JSON value starting at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				if j = skipString(b, j); j < 0 {
					return -1
				}
				j--
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\t' && b[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// readForFold reads the fields of the record at seq that a fold uses.
func readForFold(l rawLog, seq uint64) (*record.Record, error) {
	stored, err := l.ReadRaw(seq)
	if err != nil {
		return nil, err
	}
	got, err := record.Seq(stored)
	if err != nil {
		return nil, err
	}
	op, after, occurred, err := foldFields(stored[record.HeaderSize:])
	if err != nil {
		// The full decoder's error names what is wrong.
		if _, derr := record.Decode(stored); derr != nil {
			return nil, derr
		}
		return nil, fmt.Errorf("%w: body of seq %d: %w", record.ErrFormat, got, err)
	}
	return &record.Record{Seq: got, Op: op, After: after, OccurredAt: occurred}, nil
}
