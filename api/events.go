package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/stele/stele"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/record"
	"github.com/stele/stele/sysrecord"
)

// postEvents ingests CloudEvents 1.0 over HTTP as event records: structured
// mode (Content-Type application/cloudevents+json), batched mode
// (application/cloudevents-batch+json, a JSON array) and binary mode (the
// attributes in ce-* headers, the body the data). As for POST /v1/records,
// the whole request is checked before anything is appended and the 201
// comes once the records are durable.
func (s *Server) postEvents(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > s.cfg.MaxBodyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, &apiError{Status: http.StatusRequestEntityTooLarge,
			Msg: fmt.Sprintf("request body is larger than the %d-byte limit", s.cfg.MaxBodyBytes)})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, &apiError{Status: http.StatusRequestEntityTooLarge,
				Msg: fmt.Sprintf("request body is larger than the %d-byte limit", s.cfg.MaxBodyBytes)})
			return
		}
		writeError(w, http.StatusBadRequest, &apiError{Msg: "reading the request body failed: " + err.Error()})
		return
	}
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	var events []*record.CloudEvent
	batch := false
	switch mt {
	case "application/cloudevents+json":
		ev, err := record.ParseStructuredCloudEvent(body)
		if err != nil {
			writeFieldError(w, err, nil)
			return
		}
		events = append(events, ev)
	case "application/cloudevents-batch+json":
		batch = true
		var items []json.RawMessage
		if err := json.Unmarshal(body, &items); err != nil {
			writeError(w, http.StatusBadRequest, &apiError{Msg: "a CloudEvents batch must be a JSON array of events: " + err.Error()})
			return
		}
		if len(items) > s.cfg.MaxBatch {
			writeError(w, http.StatusRequestEntityTooLarge, &apiError{Status: http.StatusRequestEntityTooLarge,
				Msg: fmt.Sprintf("the batch holds %d events, more than the %d allowed", len(items), s.cfg.MaxBatch)})
			return
		}
		for i, it := range items {
			ev, err := record.ParseStructuredCloudEvent(it)
			if err != nil {
				writeFieldError(w, err, indexPtr(i))
				return
			}
			events = append(events, ev)
		}
	default:
		attrs := map[string]string{}
		for name, vals := range r.Header {
			if n := strings.ToLower(name); strings.HasPrefix(n, "ce-") && len(vals) > 0 {
				attrs[strings.TrimPrefix(n, "ce-")] = vals[0]
			}
		}
		if len(attrs) == 0 {
			writeError(w, http.StatusUnsupportedMediaType, &apiError{Msg: "send a CloudEvent as application/cloudevents+json, a batch as application/cloudevents-batch+json, or in binary mode with ce-specversion, ce-id, ce-source and ce-type headers"})
			return
		}
		ev, err := record.BinaryCloudEvent(attrs, ct, bytes.TrimSpace(body))
		if err != nil {
			writeFieldError(w, err, nil)
			return
		}
		events = append(events, ev)
	}
	if len(events) == 0 {
		writeError(w, http.StatusBadRequest, &apiError{Msg: "the batch holds no events"})
		return
	}
	recs := make([]*record.Record, len(events))
	seen := map[string]int{}
	for i, ev := range events {
		rec, err := record.CloudEventRecord(ev, s.cfg.Now())
		if err != nil {
			writeFieldError(w, err, batchIndex(batch, i))
			return
		}
		if sysrecord.IsSystem(rec.Source) {
			writeError(w, http.StatusBadRequest, &apiError{Msg: fmt.Sprintf("source: %q is reserved for the records Stele writes about itself", rec.Source.Name),
				Field: "source", Index: batchIndex(batch, i)})
			return
		}
		// Events go through the schema registry as records do: a schema
		// for the event type seals its personal fields.
		if err := privacy.Admit(s.schemas(), rec); err != nil {
			var fe *record.FieldError
			if !errors.As(err, &fe) {
				s.internalError(w, r, "checking an event against the schema registry", err)
				return
			}
			writeError(w, http.StatusBadRequest, &apiError{Msg: fe.Error(), Field: fe.Field, Index: batchIndex(batch, i)})
			return
		}
		if first, dup := seen[rec.ID]; dup {
			writeError(w, http.StatusBadRequest, &apiError{Msg: fmt.Sprintf("id: same source and id as event %d of this batch", first), Field: "id", Index: indexPtr(i)})
			return
		}
		seen[rec.ID] = i
		recs[i] = rec
	}
	res, err := s.cfg.Log.Append(r.Context(), recs)
	if err != nil {
		s.appendFailed(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		Records []stele.Appended `json:"records"`
	}{res})
}

func writeFieldError(w http.ResponseWriter, err error, idx *int) {
	e := &apiError{Msg: err.Error(), Index: idx}
	var fe *record.FieldError
	if errors.As(err, &fe) {
		e.Field = fe.Field
	}
	writeError(w, http.StatusBadRequest, e)
}
