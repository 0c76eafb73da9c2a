package record

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDuplicateMemberNamed(t *testing.T) {
	for in, want := range map[string]string{
		`{"source":{"name":"a","table":"t"},"op":"insert","key":{"id":1},"after":{"x":1,"x":2}}`: "after.x",
		`{"source":{"name":"a","table":"t"},"op":"insert","key":{"id":1},"op":"update"}`:         "op",
	} {
		_, err := ParseIngest([]byte(in), IngestOptions{Now: time.Now()})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != want || !strings.Contains(err.Error(), "duplicate") {
			t.Errorf("%s: got %v (field %v), want a duplicate error naming %s", in, err, fe, want)
		}
	}
}
