package dbztest

import (
	"context"
	"errors"
	"sync"

	"github.com/stele/stele/capture/capturetest"
)

// Upstream is what a conformance harness's upstream (capturetest) does
// the same whichever transport carries the connector's messages: it
// applies the suite's transactions, truncates and writes the typed row,
// each a call of the Connector and then Send, one at a time.
type Upstream struct {
	// Mu serialises the Connector's calls and Send; a harness holds it
	// too while it reads what Send noted.
	Mu sync.Mutex
	*Connector
	// Send carries msgs in order (Kafka produce, JetStream publish),
	// called with Mu held.
	Send func(ctx context.Context, msgs []Msg) error
}

func (u *Upstream) Apply(ctx context.Context, tx capturetest.Tx) error {
	u.Mu.Lock()
	defer u.Mu.Unlock()
	changes := make([]Change, len(tx.Changes))
	for i, ch := range tx.Changes {
		changes[i] = Change{Op: ch.Op, ID: ch.ID, V: ch.V}
	}
	msgs, err := u.Connector.Apply(changes)
	if err != nil {
		return err
	}
	return u.Send(ctx, msgs)
}

func (u *Upstream) Truncate(ctx context.Context) error {
	u.Mu.Lock()
	defer u.Mu.Unlock()
	return u.Send(ctx, u.Connector.Truncate())
}

// DDL: a Debezium stream carries no schema changes the suite could check.
func (u *Upstream) DDL(context.Context) error { return errors.New("unsupported") }

func (u *Upstream) WriteTyped(ctx context.Context) (capturetest.TypedRow, error) {
	u.Mu.Lock()
	defer u.Mu.Unlock()
	msgs, want, err := u.Typed()
	if err != nil {
		return capturetest.TypedRow{}, err
	}
	return capturetest.TypedRow{Table: "typed", Key: `{"id":1}`, Want: want}, u.Send(ctx, msgs)
}
