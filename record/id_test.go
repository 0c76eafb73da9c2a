package record

import (
	"fmt"
	"strings"
	"testing"
)

func TestIDDeriverMatchesDeriveID(t *testing.T) {
	var d IDDeriver
	for i := int64(0); i < 300; i++ {
		idx := i * 7919
		r := &Record{
			Source: Source{Name: fmt.Sprint("src", i%3), Kind: "postgres", Database: "db", Schema: "sch\u00e9ma", Table: strings.Repeat("t", int(i%70))},
			Tx:     &Tx{ID: "1", Position: fmt.Sprintf("%X/%X", i, i*31), Index: &idx},
		}
		if got, want := d.Derive(r), DeriveID(r); got != want {
			t.Fatalf("record %d: derive %s, DeriveID %s", i, got, want)
		}
	}
}
