package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stele/stele/capture/dynamoctx"
	"github.com/stele/stele/internal/dynamotest"
	"github.com/stele/stele/record"
)

func newSourceCfg(t *testing.T, endpoint string, cfg Config) *Source {
	t.Helper()
	cfg.Name, cfg.Endpoint, cfg.Credentials, cfg.StateDir = "local", endpoint, localCreds(localKey), t.TempDir()
	cfg.PollMin, cfg.PollMax, cfg.MinBackoff, cfg.MaxBackoff = 5*time.Millisecond, 50*time.Millisecond, 10*time.Millisecond, 50*time.Millisecond
	cfg.Logger = testLogger(t)
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// TestLocal runs what the conformance suite does not against DynamoDB
// Local: batch and transactional writes, a stream named by ARN, every
// set-up error.
func TestLocal(t *testing.T) {
	srv := dynamotest.Start(t, dynamotest.Options{})
	c := newClient(srv.Endpoint())
	ctx := context.Background()
	newSource := func(t *testing.T, tables ...string) *Source {
		return newSourceCfg(t, srv.Endpoint(), Config{Tables: tables})
	}
	run := func(t *testing.T, src *Source) (*logDir, func()) {
		l := openLog(t, t.TempDir())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- src.Run(ctx, l.st) }()
		stop := func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v after cancel", err)
			}
		}
		return l, stop
	}
	key := func(n int) map[string]types.AttributeValue {
		return map[string]types.AttributeValue{"id": &types.AttributeValueMemberN{Value: fmt.Sprint(n)}}
	}

	t.Run("BatchAndTransactWrites", func(t *testing.T) {
		if err := createTable(ctx, c, "batch", types.StreamViewTypeNewAndOldImages); err != nil {
			t.Fatal(err)
		}
		var reqs []types.WriteRequest
		for i := range 25 {
			reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{
				"id": key(i)["id"], "v": &types.AttributeValueMemberS{Value: fmt.Sprint("b", i)}}}})
		}
		if _, err := c.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"batch": reqs}}); err != nil {
			t.Fatal(err)
		}
		who := dynamoctx.Context{Actor: map[string]string{"id": "carol", "app": "billing"}, Cause: map[string]string{"type": "invoice", "id": "I-7"}}
		expr, names, values, err := who.Update("SET v = :v", nil, map[string]types.AttributeValue{":v": &types.AttributeValueMemberS{Value: "t-upd"}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
			{Put: &types.Put{TableName: aws.String("batch"), Item: who.Item(map[string]types.AttributeValue{"id": key(100)["id"], "v": &types.AttributeValueMemberS{Value: "t-new"}})}},
			{Update: &types.Update{TableName: aws.String("batch"), Key: key(1), UpdateExpression: aws.String(expr), ExpressionAttributeNames: names, ExpressionAttributeValues: values}},
			{Delete: &types.Delete{TableName: aws.String("batch"), Key: key(2)}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		l, stop := run(t, newSource(t, "batch"))
		recs := l.waitRecords(28, "25 batch puts and 3 transactional writes")
		stop()
		if len(recs) != 28 {
			t.Fatalf("%d records, want 28", len(recs))
		}
		byKey := map[string][]*record.Record{}
		for _, r := range recs {
			byKey[string(r.Key)] = append(byKey[string(r.Key)], r)
		}
		carol := `{"app":"billing","id":"carol"}`
		if r := byKey[`{"id":100}`]; len(r) != 1 || r[0].Op != record.OpInsert || string(r[0].Actor) != carol || string(r[0].Cause) != `{"id":"I-7","type":"invoice"}` {
			t.Errorf("transactional put: %+v", r)
		} else if strings.Contains(string(r[0].After), dynamoctx.Attribute) {
			t.Errorf("after image shows the context attribute: %s", r[0].After)
		}
		if r := byKey[`{"id":1}`]; len(r) != 2 || r[1].Op != record.OpUpdate || string(r[1].Actor) != carol || strings.Join(r[1].Changed, ",") != "v" {
			t.Errorf("transactional update of item 1: %+v", r)
		}
		if r := byKey[`{"id":2}`]; len(r) != 2 || r[1].Op != record.OpDelete || len(r[1].Actor) != 0 || string(r[1].Before) != `{"id":2,"v":"b2"}` {
			t.Errorf("transactional delete of item 2: %+v", r)
		}
	})

	t.Run("StreamARN", func(t *testing.T) {
		if err := createTable(ctx, c, "byarn", types.StreamViewTypeNewAndOldImages); err != nil {
			t.Fatal(err)
		}
		out, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("byarn")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("byarn"), Item: key(7)}); err != nil {
			t.Fatal(err)
		}
		l, stop := run(t, newSource(t, *out.Table.LatestStreamArn))
		recs := l.waitRecords(1, "the put")
		stop()
		if recs[0].Source.Table != "byarn" || string(recs[0].Key) != `{"id":7}` {
			t.Errorf("record %+v, want table byarn key 7", recs[0])
		}
	})

	t.Run("TTLDeletes", func(t *testing.T) {
		if err := createTable(ctx, c, "ttl", types.StreamViewTypeNewAndOldImages); err != nil {
			t.Fatal(err)
		}
		if _, err := c.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String("ttl"),
			TimeToLiveSpecification: &types.TimeToLiveSpecification{Enabled: aws.Bool(true), AttributeName: aws.String("exp")}}); err != nil {
			t.Fatal(err)
		}
		expired := fmt.Sprint(time.Now().Add(-time.Hour).Unix())
		if _, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("ttl"), Item: map[string]types.AttributeValue{
			"id": key(5)["id"], "exp": &types.AttributeValueMemberN{Value: expired}}}); err != nil {
			t.Fatal(err)
		}
		l, stop := run(t, newSource(t, "ttl"))
		recs := l.waitRecords(2, "the put and DynamoDB Local's Time to Live deletion")
		stop()
		if r := recs[1]; r.Op != record.OpDelete || string(r.Actor) != ttlActor || string(r.Cause) != ttlCause || string(r.Before) != `{"exp":`+expired+`,"id":5}` {
			t.Errorf("TTL deletion: %+v", r)
		}
	})

	t.Run("PartialImages", func(t *testing.T) {
		if err := createTable(ctx, c, "partial", types.StreamViewTypeNewImage); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("partial"), Item: key(1)}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String("partial"), Key: key(1)}); err != nil {
			t.Fatal(err)
		}
		l, stop := run(t, newSourceCfg(t, srv.Endpoint(), Config{Tables: []string{"partial"}, AllowPartialImages: true}))
		recs := l.waitRecords(2, "the put and the delete")
		stop()
		if recs[0].Op != record.OpInsert || string(recs[0].After) != `{"id":1}` {
			t.Errorf("insert: %+v", recs[0])
		}
		if recs[1].Op != record.OpDelete || !strings.Contains(string(recs[1].Before), `"$missing_image"`) || !strings.Contains(string(recs[1].Before), "NEW_IMAGE") {
			t.Errorf("delete without an old image: before %s", recs[1].Before)
		}
	})

	t.Run("SetupErrors", func(t *testing.T) {
		if err := createTable(ctx, c, "nostream", ""); err != nil {
			t.Fatal(err)
		}
		if err := createTable(ctx, c, "newonly", types.StreamViewTypeNewImage); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			table string
			is    error
			wants []string
		}{
			{"nostream", ErrSetup, []string{"table nostream has no stream enabled", "StreamViewType=NEW_AND_OLD_IMAGES"}},
			{"newonly", ErrSetup, []string{"table newonly's stream has view type NEW_IMAGE, want NEW_AND_OLD_IMAGES", "update-table", "allow_partial_images"}},
			{"missing", ErrNoTable, []string{"table missing", "check the name, the region and the endpoint"}},
			{"arn:aws:dynamodb:ddblocal:000000000000:table/missing/stream/2026-01-01T00:00:00.000", ErrNoTable, []string{"stream arn:aws"}},
		} {
			src := newSource(t, tc.table)
			l := openLog(t, t.TempDir())
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := src.Run(ctx, l.st)
			cancel()
			if !errors.Is(err, tc.is) {
				t.Errorf("%s: Run = %v, want %v", tc.table, err, tc.is)
				continue
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: error %q does not say %q", tc.table, err, w)
				}
			}
			if st := src.Stats(); st.State != "failed" || st.LastError == "" {
				t.Errorf("%s: stats %+v, want failed with the error", tc.table, st)
			}
		}
	})
}
