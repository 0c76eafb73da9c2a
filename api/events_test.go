package api_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

func TestCloudEvents(t *testing.T) {
	e := newEnv(t)
	structured := `{"specversion":"1.0","id":"e-1","source":"/shop/orders","type":"order.placed","time":"2026-01-02T03:04:05Z",
		"subject":"order-7","actorid":"alice","actortype":"user","data":{"order":7,"total":12.5}}`
	if r := e.do(t, http.MethodPost, "/v1/events", "application/cloudevents+json", []byte(structured)); r.status != http.StatusCreated {
		t.Fatalf("structured: %d %s", r.status, r.body)
	}
	// The producer retries: stored once.
	r := e.do(t, http.MethodPost, "/v1/events", "application/cloudevents+json", []byte(structured))
	if r.status != http.StatusCreated || !strings.Contains(string(r.body), `"duplicate":true`) {
		t.Errorf("retried event: %d %s, want a duplicate", r.status, r.body)
	}
	batch := `[{"specversion":"1.0","id":"e-2","source":"/shop/orders","type":"order.paid","data":{"order":7}},
		{"specversion":"1.0","id":"e-3","source":"/shop/orders","type":"order.shipped","data_base64":"aGk="}]`
	if r := e.do(t, http.MethodPost, "/v1/events", "application/cloudevents-batch+json", []byte(batch)); r.status != http.StatusCreated {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/events", bytes.NewReader([]byte(`{"order":8}`)))
	for k, v := range map[string]string{"Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": "e-4",
		"ce-source": "/shop/orders", "ce-type": "order.placed", "ce-actorid": "bob"} {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("binary: %d", resp.StatusCode)
	}
	list := e.get(t, "/v1/records?source=/shop/orders")
	body := string(list.body)
	for _, want := range []string{
		`"op":"event"`, `"table":"order.placed"`, `"actor":{"id":"alice","type":"user"}`, `"actor":{"id":"bob"}`,
		`"data":{"order":7,"total":12.5}`, `"subject":"order-7"`, `"data":{"base64":"aGk="}`, `"occurred_at":"2026-01-02T03:04:05Z"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("records lack %s:\n%s", want, body)
		}
	}
	if n := strings.Count(body, `"op":"event"`); n != 4 {
		t.Errorf("%d event records, want 4", n)
	}
	for _, tc := range []struct{ ct, body, field string }{
		{"application/cloudevents+json", `{"specversion":"0.3","id":"x","source":"s","type":"t"}`, "specversion"},
		{"application/cloudevents+json", `{"specversion":"1.0","source":"s","type":"t"}`, "id"},
		{"application/cloudevents+json", `{"specversion":"1.0","id":"x","source":"s","type":"t","time":"yesterday"}`, "time"},
		{"application/cloudevents-batch+json", `[{"specversion":"1.0","id":"x","source":"s","type":"t"},{"specversion":"1.0","id":"x","source":"s","type":"t"}]`, "id"},
	} {
		r := e.do(t, http.MethodPost, "/v1/events", tc.ct, []byte(tc.body))
		if r.status != http.StatusBadRequest || r.json(t)["field"] != tc.field {
			t.Errorf("%s: %d %s, want 400 naming %s", tc.body, r.status, r.body, tc.field)
		}
	}
	if r := e.do(t, http.MethodPost, "/v1/events", "text/plain", []byte("hi")); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("no CloudEvent: %d %s", r.status, r.body)
	}
}
