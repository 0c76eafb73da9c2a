package keystore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stele/stele/internal/natstest"
	"github.com/stele/stele/privacy"
	"github.com/stele/stele/privacy/keystore"
	"github.com/stele/stele/record"
	"github.com/stele/stele/schema"
)

const eraseSchema = `{
  "type": "object",
  "x-retention": "P1Y",
  "properties": {
    "id":    {"type": "integer", "x-subject": true},
    "email": {"type": "string", "x-pii": true},
    "name":  {"type": "string", "x-pii": true},
    "plan":  {"type": "string"}
  },
  "required": ["id"]
}`

// clusterNode is one Stele node of the test: its data directory, its
// connection to its own NATS server and its KV keystore and guard.
type clusterNode struct {
	dir   string
	js    jetstream.JetStream
	keys  *keystore.KVStore
	guard *privacy.Guard
}

// Erasure in a cluster: after a subject's key is destroyed, no file of any
// node's data directory or any NATS server's store holds the subject's
// personal data in clear, its data key, or the key's wrapped value — once
// the bucket's raft group has taken its next snapshot, which compacts the
// raft log that still carries the original publish. The test shows both:
// the log holds the wrapped value right after the erase, and no file holds
// anything after the snapshot nats-server takes on its own every 2–3
// minutes (forced here on each server, as the server's timer would).
func TestKVErasureForensicScan(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := natstest.StartT(t, 3)
	master, err := keystore.EnvMaster(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*clusterNode
	for i := range 3 {
		n := &clusterNode{dir: t.TempDir(), js: natstest.JetStream(t, c.URL(i))}
		n.keys, err = keystore.OpenKV(ctx, n.js, "STELE_KEYS", master, keystore.Options{Replicas: 3})
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		t.Cleanup(func() { n.keys.Close() })
		reg, err := schema.Open(filepath.Join(n.dir, "schemas"))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := reg.Put(ctx, "crm.public.customers", []byte(eraseSchema)); err != nil {
			t.Fatal(err)
		}
		if n.guard, err = privacy.New(ctx, n.keys, reg, privacy.Options{}); err != nil {
			t.Fatalf("node %d: guard: %v", i, err)
		}
		nodes = append(nodes, n)
	}
	// The log stream every node follows (the cluster's R3 log), holding
	// sealed records as the replicated path would.
	if _, err := nodes[0].js.CreateStream(ctx, jetstream.StreamConfig{Name: "LOG", Subjects: []string{"log"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}

	const email, fullName = "alice.forensic@example.com", "Alice Forensic-Liddell"
	seal := func(n *clusterNode, id, mail, name string) *record.Record {
		t.Helper()
		after, err := record.Canonical(fmt.Appendf(nil, `{"id":%s,"email":%q,"name":%q,"plan":"gold"}`, id, mail, name))
		if err != nil {
			t.Fatal(err)
		}
		r := &record.Record{
			ID:     "rec-" + id,
			Source: record.Source{Name: "crm", Kind: "postgres", Schema: "public", Table: "customers"},
			Op:     record.OpInsert, Key: json.RawMessage(`{"id":` + id + `}`), After: after,
			OccurredAt: time.Now().Add(-time.Hour),
		}
		if err := n.guard.Seal(ctx, r); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.js.Publish(ctx, "log", b); err != nil {
			t.Fatal(err)
		}
		// Every node keeps its own copy of the log.
		for _, m := range nodes {
			f, err := os.OpenFile(filepath.Join(m.dir, "records.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(append(b, '\n'))
			f.Close()
		}
		return r
	}
	alice := seal(nodes[0], "7", email, fullName)
	bob := seal(nodes[1], "8", "bob@example.com", "Bob")
	subjects := nodes[0].guard.SubjectsOf(alice)
	if len(subjects) != 1 {
		t.Fatalf("subjects of alice: %v", subjects)
	}
	kid, key, err := nodes[0].keys.GetOrCreate(ctx, keystore.KindSubject, subjects[0])
	if err != nil {
		t.Fatal(err)
	}
	stored, err := kvValue(ctx, nodes[0].js, "k."+kid)
	if err != nil {
		t.Fatal(err)
	}

	needles := map[string][]byte{
		"the data key":                 key,
		"the key's stored value":       stored,
		"the stored value, base64":     []byte(base64.StdEncoding.EncodeToString(stored)),
		"the e-mail address in clear":  []byte(email),
		"the subject's name in clear":  []byte(fullName),
		"the key, base64":              []byte(base64.StdEncoding.EncodeToString(key)),
		"the key's stored value, tail": stored[len(stored)-40:], // the master-wrapped bytes alone
	}
	var dirs []string
	for i := range c.Size() {
		dirs = append(dirs, c.StoreDir(i))
	}
	for _, n := range nodes {
		dirs = append(dirs, n.dir)
	}
	// The scan itself works: before the erase it finds the stored value on
	// every server.
	if hits := scan(t, dirs, map[string][]byte{"stored": stored}); len(hits) < c.Size() {
		t.Fatalf("before erasure the scan finds the stored value only in %v; want every server's store", hits)
	}
	if hits := scan(t, dirs, map[string][]byte{"mail": []byte(email), "key": key}); len(hits) > 0 {
		t.Fatalf("before erasure, personal data in clear or the raw key on disk: %v", hits)
	}

	kids, err := nodes[0].keys.Destroy(ctx, keystore.KindSubject, subjects[0])
	if err != nil || len(kids) != 1 || kids[0] != kid {
		t.Fatalf("destroy: %v %v", kids, err)
	}
	// Every node stops reading alice; bob is untouched.
	for i, n := range nodes {
		for {
			err := n.guard.Unseal(ctx, cloneRecord(alice))
			if err != nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("node %d still reads the erased subject", i)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := n.guard.Unseal(ctx, cloneRecord(bob)); err != nil {
			t.Fatalf("node %d: the other subject is affected: %v", i, err)
		}
	}

	// Right after the erase the stream's blocks are clean — the secure
	// delete overwrote the message on every replica — but the raft log of
	// the bucket's group still holds the publish.
	waitApplied(t, ctx, c)
	hits := scan(t, dirs, needles)
	for _, h := range hits {
		if !strings.Contains(h, string(filepath.Separator)+"_js_"+string(filepath.Separator)) {
			t.Errorf("after the erase, outside the raft log: %s", h)
		}
	}
	t.Logf("after the erase, before the raft snapshot: %d hits, all in raft logs: %v", len(hits), hits)

	for i := range c.Size() {
		if err := c.Server(i).JetStreamSnapshotStream(server.DEFAULT_GLOBAL_ACCOUNT, "KV_STELE_KEYS"); err != nil {
			t.Fatalf("server %d: snapshot the bucket's raft group: %v", i, err)
		}
	}
	for {
		hits = scan(t, dirs, needles)
		if len(hits) == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("after the erase and the raft snapshot, still on disk: %v", hits)
		}
		time.Sleep(100 * time.Millisecond) // the compacted log's files are removed out of band
	}
}

// kvValue reads the bucket value stored under key.
func kvValue(ctx context.Context, js jetstream.JetStream, key string) ([]byte, error) {
	kv, err := js.KeyValue(ctx, "STELE_KEYS")
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

func cloneRecord(r *record.Record) *record.Record {
	c := *r
	c.After = bytes.Clone(r.After)
	return &c
}

// waitApplied waits until every server's replica of the bucket has
// applied everything its leader has, so a scan sees the erase everywhere.
func waitApplied(t *testing.T, ctx context.Context, c *natstest.Cluster) {
	t.Helper()
	for {
		var last []string
		for i := range c.Size() {
			jsz, err := c.Server(i).Jsz(&server.JSzOptions{Accounts: true, Streams: true})
			if err != nil {
				t.Fatal(err)
			}
			state := "none"
			for _, a := range jsz.AccountDetails {
				for _, st := range a.Streams {
					if st.Name == "KV_STELE_KEYS" {
						state = fmt.Sprintf("%d/%d/%d", st.State.LastSeq, st.State.Msgs, st.State.NumDeleted)
					}
				}
			}
			last = append(last, state)
		}
		if last[0] == last[1] && last[1] == last[2] {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("replicas did not converge: %v", last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scan reads every file under dirs and names each (file, needle) found.
func scan(t *testing.T, dirs []string, needles map[string][]byte) []string {
	t.Helper()
	var hits []string
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil // removed while walking (a compacted log)
				}
				return err
			}
			if d.IsDir() {
				return nil
			}
			data, err := os.ReadFile(path)
			if os.IsNotExist(err) {
				return nil
			}
			if err != nil {
				return err
			}
			for what, n := range needles {
				if bytes.Contains(data, n) {
					hits = append(hits, what+" in "+path)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return hits
}
