package main

import (
	"encoding/json"
	"fmt"
	"time"
)

// demoRecords is a small, realistic CRM history: customers created and
// edited through a web app, orders placed by a checkout service, a
// warehouse bot shipping them, an erasure-driven delete and billing events.
// Every record names its source position, so running the demo twice stores
// nothing new: the ids are the same and the log keeps each change once.
func demoRecords() []map[string]any {
	base := time.Date(2025, 1, 10, 9, 0, 0, 0, time.UTC)
	var out []map[string]any
	lsn := 0x16B3000
	add := func(at time.Time, table string, op string, key, before, after map[string]any, actor, cause map[string]any) {
		lsn += 0x1a0
		r := map[string]any{
			"source":      map[string]any{"name": "crm", "kind": "postgres", "database": "crm", "schema": "public", "table": table},
			"op":          op,
			"key":         key,
			"actor":       actor,
			"tx":          map[string]any{"id": fmt.Sprint(7000 + len(out)), "position": fmt.Sprintf("0/%X", lsn), "index": 0, "commit_time": at.Format(time.RFC3339)},
			"occurred_at": at.Format(time.RFC3339),
		}
		if before != nil {
			r["before"] = before
		}
		if after != nil {
			r["after"] = after
		}
		if cause != nil {
			r["cause"] = cause
		}
		out = append(out, r)
	}
	user := func(id string) map[string]any {
		return map[string]any{"id": id, "type": "user", "app": "crm-web", "ip": "10.0.4.17", "request_id": fmt.Sprintf("req-%04d", len(out))}
	}
	service := func(id string) map[string]any { return map[string]any{"id": id, "type": "service", "app": id} }
	cities := []string{"London", "Paris", "Berlin", "Lisbon", "Oslo", "Madrid"}
	names := []string{"Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov", "Donald Knuth",
		"Frances Allen", "Ken Thompson", "Radia Perlman", "John McCarthy", "Margaret Hamilton", "Dennis Ritchie"}
	customers := map[int]map[string]any{}
	for i, name := range names {
		id := i + 1
		c := map[string]any{"id": id, "name": name, "email": fmt.Sprintf("customer%d@example.com", id), "city": cities[i%len(cities)], "tier": "standard"}
		customers[id] = c
		add(base.Add(time.Duration(i)*time.Hour), "customers", "insert", map[string]any{"id": id}, nil, c, user("alice"), nil)
	}
	update := func(at time.Time, id int, field string, value any, actor, cause map[string]any) {
		before := customers[id]
		after := map[string]any{}
		for k, v := range before {
			after[k] = v
		}
		after[field] = value
		customers[id] = after
		add(at, "customers", "update", map[string]any{"id": id}, before, after, actor, cause)
	}
	update(time.Date(2025, 3, 2, 14, 5, 0, 0, time.UTC), 7, "city", "Paris", user("bob"),
		map[string]any{"type": "support-ticket", "description": "customer moved; ticket #4411"})
	for o := 0; o < 8; o++ {
		cust := o%len(names) + 1
		at := time.Date(2025, 3, 3+o, 11, 0, 0, 0, time.UTC)
		order := map[string]any{"id": 1001 + o, "customer_id": cust, "total": fmt.Sprintf("%d.90", 20+o*7), "status": "placed"}
		add(at, "orders", "insert", map[string]any{"id": 1001 + o}, nil, order, service("checkout"), map[string]any{"type": "order.placed"})
		shipped := map[string]any{"id": 1001 + o, "customer_id": cust, "total": order["total"], "status": "shipped"}
		add(at.Add(26*time.Hour), "orders", "update", map[string]any{"id": 1001 + o}, order, shipped, service("warehouse-bot"), nil)
	}
	update(time.Date(2025, 5, 20, 8, 30, 0, 0, time.UTC), 7, "email", "frances.allen@example.org", user("alice"),
		map[string]any{"type": "self-service", "description": "customer changed their email in the portal"})
	update(time.Date(2025, 6, 1, 16, 0, 0, 0, time.UTC), 7, "tier", "gold", service("loyalty-job"),
		map[string]any{"type": "batch", "description": "nightly loyalty tier recalculation"})
	update(time.Date(2025, 6, 1, 16, 0, 1, 0, time.UTC), 3, "tier", "gold", service("loyalty-job"),
		map[string]any{"type": "batch", "description": "nightly loyalty tier recalculation"})
	add(time.Date(2025, 9, 9, 10, 0, 0, 0, time.UTC), "customers", "delete", map[string]any{"id": 8}, customers[8], nil,
		user("dpo"), map[string]any{"type": "erasure-request", "description": "GDPR Art. 17 request #17-0042"})
	return out
}

func demoJSON(recs []map[string]any) []byte {
	b, _ := json.Marshal(recs)
	return b
}
