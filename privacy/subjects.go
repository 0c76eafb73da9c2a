package privacy

import (
	"errors"

	"github.com/stele/stele/record"
	"github.com/stele/stele/schema"
)

// SubjectsOf names the data subjects r refers to, as erasure names them,
// by its subject's latest schema: each data group's subject value found in
// after, before or key. It is best effort for records kept outside the log
// (a record that broke its schema may lack a subject field or hold it with
// the wrong type); nil when the table has no schema.
func (g *Guard) SubjectsOf(r *record.Record) []string {
	sch, err := g.schemas.Latest(SubjectName(r.Source))
	if err != nil {
		if !errors.Is(err, schema.ErrNotFound) {
			g.log.Warn("dead letter: no schema to name its subjects", "source", SubjectName(r.Source), "err", err)
		}
		return nil
	}
	var out []string
	for _, gr := range sch.Groups {
		if len(gr.SubjectField) == 0 {
			continue
		}
		for _, img := range [][]byte{r.After, r.Before, r.Key} {
			if len(img) == 0 {
				continue
			}
			raw, ok := valueAt(img, gr.SubjectField)
			if !ok || string(raw) == "null" {
				continue
			}
			if text, err := scalarText(raw); err == nil {
				out = append(out, g.subjectName(gr.Name, text))
				break
			}
		}
	}
	return out
}
