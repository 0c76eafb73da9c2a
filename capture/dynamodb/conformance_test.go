package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/capture/capturetest"
	"github.com/stele/stele/capture/dynamoctx"
	"github.com/stele/stele/internal/dynamotest"
	"github.com/stele/stele/record"
)

// TestConformance runs the source conformance suite against AWS's
// DynamoDB Local.
func TestConformance(t *testing.T) {
	capturetest.Run(t, &ddbHarness{})
}

type ddbHarness struct {
	srv *dynamotest.Server
	c   *dynamodb.Client
	n   atomic.Int64
}

func (h *ddbHarness) Kind() string { return Kind }

func (h *ddbHarness) Unsupported() map[capturetest.Capability]string {
	return map[capturetest.Capability]string{
		capturetest.Transactions: "DynamoDB Streams carries no transaction identity: each write of a TransactWriteItems call is a stream record of its own (TestTransactWriteItems checks they all land)",
		capturetest.Truncate:     "DynamoDB has no truncate (a table is deleted, which ends its stream)",
		capturetest.DDL:          "DynamoDB items have no schema to change; attributes come and go per item",
	}
}

func (h *ddbHarness) Start(t *testing.T) {
	h.srv = dynamotest.Start(t, dynamotest.Options{Persist: true})
	h.c = newClient(h.srv.Endpoint())
}

func (h *ddbHarness) Open(t *testing.T) capturetest.Upstream {
	name := fmt.Sprintf("conform%d", h.n.Add(1))
	u := &ddbUpstream{h: h, name: name, items: name + "_items", typed: name + "_typed", state: t.TempDir()}
	for _, tbl := range []string{u.items, u.typed} {
		if err := createTable(context.Background(), h.c, tbl, types.StreamViewTypeNewAndOldImages); err != nil {
			t.Fatalf("create table %s: %v", tbl, err)
		}
	}
	return u
}

type ddbUpstream struct {
	h                  *ddbHarness
	name, items, typed string
	state              string // the source's StateDir, kept across its restarts
}

func (u *ddbUpstream) Name() string  { return u.name }
func (u *ddbUpstream) Table() string { return u.items }

func (u *ddbUpstream) Source(t *testing.T, bad bool) capture.Source {
	cfg := Config{
		Name:     u.name,
		Tables:   []string{u.items, u.typed},
		Endpoint: u.h.srv.Endpoint(), Region: "us-east-1",
		Credentials: localCreds(localKey),
		StateDir:    u.state,
		PollMin:     5 * time.Millisecond, PollMax: 50 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		PositionInterval: 20 * time.Millisecond,
		// Small appends, so crashes fall between the appends of one page.
		BatchSize: 16,
		Logger:    testLogger(t),
	}
	if bad {
		cfg.Credentials = localCreds(badKey)
		cfg.Name = u.name + "_bad"
		cfg.StateDir = t.TempDir()
	}
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// Ready returns at once: a source without positions reads each shard from
// its trim horizon, so it captures every change of the new tables.
func (u *ddbUpstream) Ready(*testing.T) {}

func (u *ddbUpstream) Apply(ctx context.Context, tx capturetest.Tx) error {
	if len(tx.Changes) != 1 {
		return fmt.Errorf("a DynamoDB write is one change, got %d", len(tx.Changes))
	}
	ch := tx.Changes[0]
	key := map[string]types.AttributeValue{"id": &types.AttributeValueMemberN{Value: fmt.Sprint(ch.ID)}}
	var sc *dynamoctx.Context
	if tx.Actor != nil {
		sc = &dynamoctx.Context{Actor: tx.Actor}
	}
	c := u.h.c
	switch ch.Op {
	case record.OpInsert:
		item := map[string]types.AttributeValue{"id": key["id"], "v": &types.AttributeValueMemberS{Value: ch.V}}
		if sc != nil {
			item = sc.Item(item)
		}
		_, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(u.items), Item: item})
		return err
	case record.OpUpdate:
		expr, names, values := "SET v = :v", map[string]string(nil), map[string]types.AttributeValue{":v": &types.AttributeValueMemberS{Value: ch.V}}
		if sc != nil {
			var err error
			if expr, names, values, err = sc.Update(expr, names, values); err != nil {
				return err
			}
		}
		_, err := c.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(u.items), Key: key,
			UpdateExpression: aws.String(expr), ExpressionAttributeNames: names, ExpressionAttributeValues: values})
		return err
	case record.OpDelete:
		if sc != nil {
			expr, names, values := sc.MarkDelete()
			if _, err := c.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(u.items), Key: key,
				UpdateExpression: aws.String(expr), ExpressionAttributeNames: names, ExpressionAttributeValues: values}); err != nil {
				return err
			}
		}
		_, err := c.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(u.items), Key: key})
		return err
	}
	return fmt.Errorf("op %s", ch.Op)
}

// Acknowledged reads the positions the source saved: DynamoDB Streams
// keeps none, so they are what a restarted source starts after.
func (u *ddbUpstream) Acknowledged(context.Context) (func(*record.Record) bool, error) {
	return ackedBy(u.state)
}

func (u *ddbUpstream) Restart(t *testing.T) { u.h.srv.Restart(t) }

func (u *ddbUpstream) Truncate(context.Context) error { return errors.ErrUnsupported }
func (u *ddbUpstream) DDL(context.Context) error      { return errors.ErrUnsupported }

func (u *ddbUpstream) WriteTyped(ctx context.Context) (capturetest.TypedRow, error) {
	_, err := u.h.c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(u.typed), Item: typedItem()})
	return capturetest.TypedRow{Table: u.typed, Key: `{"id":1}`, Want: typedWant()}, err
}

// typedItem holds every attribute type.
func typedItem() map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"id":   &types.AttributeValueMemberN{Value: "1"},
		"s":    &types.AttributeValueMemberS{Value: "héllo \"q\" <x>\n"},
		"n":    &types.AttributeValueMemberN{Value: "12345678901234567890.123456789012345678"},
		"neg":  &types.AttributeValueMemberN{Value: "-0.5"},
		"tiny": &types.AttributeValueMemberN{Value: "1E-130"},
		"b":    &types.AttributeValueMemberB{Value: []byte{0xde, 0xad, 0xbe, 0xef}},
		"t":    &types.AttributeValueMemberBOOL{Value: true},
		"f":    &types.AttributeValueMemberBOOL{Value: false},
		"nul":  &types.AttributeValueMemberNULL{Value: true},
		"m": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
			"b": &types.AttributeValueMemberN{Value: "2"},
			"a": &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberN{Value: "1"}, &types.AttributeValueMemberS{Value: "x"}}},
		}},
		"l":  &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberS{Value: "a"}, &types.AttributeValueMemberN{Value: "1"}, &types.AttributeValueMemberBOOL{Value: false}}},
		"ss": &types.AttributeValueMemberSS{Value: []string{"b", "a", "c"}},
		"ns": &types.AttributeValueMemberNS{Value: []string{"10", "-1", "2.5"}},
		"bs": &types.AttributeValueMemberBS{Value: [][]byte{{2}, {1}}},
		"e":  &types.AttributeValueMemberS{Value: ""},
	}
}

func typedWant() map[string]string {
	return map[string]string{
		"id": "1", "s": `"héllo \"q\" <x>\n"`, "n": "12345678901234567890.123456789012345678", "neg": "-0.5",
		// DynamoDB Local answers 1E-130 in plain decimal form; the
		// digits it sends are the digits stored.
		"tiny": "0." + strings.Repeat("0", 129) + "1", "b": `"3q2+7w=="`, "t": "true", "f": "false", "nul": "null",
		"m": `{"a":[1,"x"],"b":2}`, "l": `["a",1,false]`, "ss": `["a","b","c"]`, "ns": "[-1,2.5,10]",
		"bs": `["AQ==","Ag=="]`, "e": `""`,
	}
}

func (u *ddbUpstream) CheckCredentialError(t *testing.T, err error) {
	if !errors.Is(err, ErrAuth) {
		t.Errorf("bad credentials: err = %v, want ErrAuth", err)
	}
	for _, want := range []string{"credentials were rejected", "check the AWS credentials", u.items} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("bad credentials: error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), localSecret) {
		t.Errorf("the error reveals the secret key: %v", err)
	}
}
