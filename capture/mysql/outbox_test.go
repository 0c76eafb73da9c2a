package mysql

import (
	"testing"

	"github.com/stele/stele/capture/capturetest"
	"github.com/stele/stele/internal/mysqltest"
	"github.com/stele/stele/query"
)

// TestOutbox: against MariaDB, a transaction that inserts an outbox row of
// Debezium's layout, changes two rows and deletes the outbox row becomes
// one event and two changes caused by it, found by the cause filter.
func TestOutbox(t *testing.T) {
	srv := mysqltest.Start(t, mysqltest.Options{})
	url := newDB(t, srv, "obx",
		`CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(10,2))`,
		`CREATE TABLE order_lines (id INT PRIMARY KEY, order_id INT, sku VARCHAR(20))`,
		`CREATE TABLE outbox (id CHAR(36) PRIMARY KEY, aggregatetype VARCHAR(64), aggregateid VARCHAR(64), type VARCHAR(64), payload JSON)`)
	ts := openStore(t, t.TempDir())
	startReady(t, Config{URL: url, Outbox: "obx.outbox"}, ts)
	srv.Exec(t, "obx",
		`BEGIN`,
		`INSERT INTO orders VALUES (7, 12.50)`,
		`INSERT INTO outbox VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'order', '7', 'OrderPlaced', '{"total": 12.5}')`,
		`INSERT INTO order_lines VALUES (70, 7, 'sku-1')`,
		`DELETE FROM outbox`,
		`COMMIT`)
	recs := ts.records(t, 3)
	ev := capturetest.CheckOutbox(t, recs, "OrderPlaced", query.New(ts.Store, ts.ix))
	if ev.Source.Database != "obx" || ev.Source.Table != "outbox" {
		t.Errorf("event source %+v", ev.Source)
	}
}
