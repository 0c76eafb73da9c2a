package dynamodb

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stele/stele/capture/dynamoctx"
	"github.com/stele/stele/internal/dynamotest"
	"github.com/stele/stele/internal/stelebin"
	"github.com/stele/stele/logstore"
)

// TestCrashExactlyOnce runs the real stele binary against DynamoDB Local
// under a continuous write workload, kill -9s it three times, and checks
// that the log holds every change exactly once against a scan of the
// table (each step inserts an item and increments v of an earlier one,
// so the table is its own ground truth), and verifies.
func TestCrashExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the stele binary; skipped with -short")
	}
	srv := dynamotest.Start(t, dynamotest.Options{})
	c := newClient(srv.Endpoint())
	ctx := context.Background()
	if err := createTable(ctx, c, "crash", types.StreamViewTypeNewAndOldImages); err != nil {
		t.Fatal(err)
	}
	// A second, broken source (a missing table) must not stop the first.
	stele := stelebin.New(t, stelebin.Build(t),
		"--source", "dynamodb://crash?endpoint="+srv.Endpoint(), "--source", "dynamodb://no_such_table?endpoint="+srv.Endpoint())
	stele.Env = []string{"AWS_ACCESS_KEY_ID=" + localKey, "AWS_SECRET_ACCESS_KEY=" + localSecret,
		"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true"}
	stele.Start()

	var stop atomic.Bool
	var wg sync.WaitGroup
	var workErr error
	wg.Go(func() {
		for n := int64(1); !stop.Load(); n++ {
			item := map[string]types.AttributeValue{"id": &types.AttributeValueMemberN{Value: fmt.Sprint(n)}, "v": &types.AttributeValueMemberN{Value: "0"}}
			if n%3 == 0 {
				item = dynamoctx.Context{Actor: map[string]string{"id": "worker"}}.Item(item)
			}
			if _, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("crash"), Item: item}); err != nil {
				workErr = err
				return
			}
			_, err := c.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String("crash"),
				Key:              map[string]types.AttributeValue{"id": &types.AttributeValueMemberN{Value: fmt.Sprint(1 + rand.Int64N(n))}},
				UpdateExpression: aws.String("ADD v :one"), ExpressionAttributeValues: map[string]types.AttributeValue{":one": &types.AttributeValueMemberN{Value: "1"}}})
			if err != nil {
				workErr = err
				return
			}
		}
	})
	for range 3 {
		time.Sleep(time.Duration(700+rand.IntN(600)) * time.Millisecond)
		stele.Restart()
	}
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if workErr != nil {
		t.Fatalf("workload: %v", workErr)
	}
	truth := map[int]int{}
	p := dynamodb.NewScanPaginator(c, &dynamodb.ScanInput{TableName: aws.String("crash"), ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			id, _ := strconv.Atoi(it["id"].(*types.AttributeValueMemberN).Value)
			v, _ := strconv.Atoi(it["v"].(*types.AttributeValueMemberN).Value)
			truth[id] = v
		}
	}
	want := uint64(0)
	for _, v := range truth {
		want += 1 + uint64(v)
	}
	deadline := time.Now().Add(60 * time.Second)
	for size := uint64(0); size < want; size = stele.CheckpointSize() {
		if time.Now().After(deadline) {
			t.Fatalf("log reached %d records, want %d", size, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := stele.Stop(); err != nil {
		t.Fatalf("stele exit: %v", err)
	}
	logs := stele.Logs()
	if !strings.Contains(logs, "capture source stopped") || !strings.Contains(logs, "table or stream not found") {
		t.Errorf("the broken source's permanent failure was not logged")
	}
	if strings.Contains(logs, localSecret) {
		t.Errorf("the secret key appears in the logs")
	}
	if _, err := logstore.VerifyDir(ctx, stele.Data, logstore.VerifyOptions{}); err != nil {
		t.Fatalf("log does not verify: %v", err)
	}
	l := openLog(t, stele.Data)
	recs := l.records()
	if uint64(len(recs)) != want {
		t.Fatalf("log holds %d records, want %d (one per change)", len(recs), want)
	}
	inserts, updates := map[int]int{}, map[int]int{}
	ids := map[string]bool{}
	for _, r := range recs {
		if ids[r.ID] {
			t.Fatalf("id %s stored twice", r.ID)
		}
		ids[r.ID] = true
		var id int
		if _, err := fmt.Sscanf(string(r.Key), `{"id":%d}`, &id); err != nil {
			t.Fatalf("key %s: %v", r.Key, err)
		}
		switch r.Op {
		case "insert":
			inserts[id]++
			if want := id%3 == 0; want != (string(r.Actor) == `{"id":"worker"}`) {
				t.Errorf("item %d: actor %s", id, r.Actor)
			}
		case "update":
			updates[id]++
			if len(r.Actor) != 0 {
				t.Errorf("item %d: update carries actor %s, left behind by its insert", id, r.Actor)
			}
		default:
			t.Fatalf("unexpected op %s", r.Op)
		}
	}
	for id, v := range truth {
		if inserts[id] != 1 || updates[id] != v {
			t.Errorf("item %d: %d inserts and %d updates in the log, want 1 and %d", id, inserts[id], updates[id], v)
		}
	}
	if len(inserts) != len(truth) {
		t.Errorf("log has inserts of %d items, the table has %d", len(inserts), len(truth))
	}
	t.Logf("%d items, %d records, 3 kills", len(truth), len(recs))
}
