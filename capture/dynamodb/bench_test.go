package dynamodb

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/stele/stele/internal/dynamotest"
)

// BenchmarkDecode is the decoding hot path: one stream record of a
// typical item (a dozen attributes, a nested map, a set) to a lineage
// record with its images, changed fields and id.
func BenchmarkDecode(b *testing.B) {
	img := func(v string) map[string]types.AttributeValue {
		m := map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "customer#7"}, "sk": &types.AttributeValueMemberN{Value: "1234567"},
			"status": &types.AttributeValueMemberS{Value: v}, "amount": &types.AttributeValueMemberN{Value: "1249.95"},
			"tags":    &types.AttributeValueMemberSS{Value: []string{"vip", "eu", "b2b"}},
			"address": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"city": &types.AttributeValueMemberS{Value: "Lyon"}, "zip": &types.AttributeValueMemberS{Value: "69001"}}},
			"active":  &types.AttributeValueMemberBOOL{Value: true},
		}
		for i := range 5 {
			m[fmt.Sprint("f", i)] = &types.AttributeValueMemberS{Value: "some text of the item"}
		}
		return m
	}
	rec := streamRecord(types.OperationTypeModify, img("open"), img("paid"))
	rec.Dynamodb.Keys = map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "customer#7"}, "sk": &types.AttributeValueMemberN{Value: "1234567"}}
	d := decoder{source: "bench", table: "Orders"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.decode("shardId-00000001", rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCapture measures, in one run against DynamoDB Local, over the
// same stream: a raw GetRecords loop reading every record to nothing, and
// the source capturing the same records into a durable, indexed log; it
// reports both rates, their ratio, the source's API calls per record and
// the peak RSS of the process. STELE_BENCH_ITEMS sets the items written
// (default 20000).
func BenchmarkCapture(b *testing.B) {
	n := 20_000
	if v := os.Getenv("STELE_BENCH_ITEMS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("STELE_BENCH_ITEMS=%q: want a positive number", v)
		}
	}
	srv := dynamotest.Start(b, dynamotest.Options{})
	c := newClient(srv.Endpoint())
	ctx := context.Background()
	if err := createTable(ctx, c, "bench", ddbtypes.StreamViewTypeNewAndOldImages); err != nil {
		b.Fatal(err)
	}
	loadItems(b, c, "bench", n)
	streams := dynamodbstreams.New(dynamodbstreams.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.Endpoint()), Credentials: localCreds(localKey)})
	desc, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("bench")})
	if err != nil {
		b.Fatal(err)
	}
	arn := *desc.Table.LatestStreamArn
	// A first read warms DynamoDB Local's JIT; then rounds alternate
	// which reader goes first, so neither always meets a warmer server.
	rawRead(b, streams, arn, n)
	var rawTotal, capTotal time.Duration
	var calls uint64
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			rawTotal += rawRead(b, streams, arn, n)
		}
		d, cl := captureAll(b, srv.Endpoint(), n)
		capTotal += d
		calls += cl
		if i%2 == 1 {
			rawTotal += rawRead(b, streams, arn, n)
		}
	}
	b.StopTimer()
	rawRate := float64(n*b.N) / rawTotal.Seconds()
	capRate := float64(n*b.N) / capTotal.Seconds()
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	b.ReportMetric(rawRate, "raw-records/s")
	b.ReportMetric(capRate, "captured-records/s")
	b.ReportMetric(capRate/rawRate, "ratio")
	b.ReportMetric(float64(calls)/float64(n*b.N), "api-calls/record")
	b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
}

// loadItems writes n items of about 200 bytes with BatchWriteItem, four
// writers at once.
func loadItems(b *testing.B, c *dynamodb.Client, table string, n int) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			for lo := w * 25; lo < n; lo += 100 {
				var reqs []ddbtypes.WriteRequest
				for i := lo; i < min(lo+25, n); i++ {
					reqs = append(reqs, ddbtypes.WriteRequest{PutRequest: &ddbtypes.PutRequest{Item: map[string]ddbtypes.AttributeValue{
						"id":      &ddbtypes.AttributeValueMemberN{Value: strconv.Itoa(i)},
						"account": &ddbtypes.AttributeValueMemberN{Value: strconv.Itoa(i % 97)},
						"amount":  &ddbtypes.AttributeValueMemberN{Value: fmt.Sprintf("%d.25", i)},
						"note":    &ddbtypes.AttributeValueMemberS{Value: fmt.Sprintf("payment %d of a customer, a note of some length", i)},
						"tags":    &ddbtypes.AttributeValueMemberSS{Value: []string{"eu", "card"}},
					}}})
				}
				in := &dynamodb.BatchWriteItemInput{RequestItems: map[string][]ddbtypes.WriteRequest{table: reqs}}
				for len(in.RequestItems[table]) > 0 {
					out, err := c.BatchWriteItem(context.Background(), in)
					if err != nil {
						errs <- err
						return
					}
					in.RequestItems = out.UnprocessedItems
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// rawRead reads every shard of the stream from its trim horizon until n
// records were seen, discarding them: what the service can deliver to one
// sequential reader.
func rawRead(b *testing.B, streams *dynamodbstreams.Client, arn string, n int) time.Duration {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	out, err := streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(arn)})
	if err != nil {
		b.Fatal(err)
	}
	seen := 0
	for _, sh := range out.StreamDescription.Shards {
		it, err := streams.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(arn), ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			b.Fatal(err)
		}
		iter := it.ShardIterator
		for iter != nil && seen < n {
			page, err := streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(1000)})
			if err != nil {
				b.Fatal(err)
			}
			seen += len(page.Records)
			iter = page.NextShardIterator
		}
	}
	if seen < n {
		b.Fatalf("raw read saw %d records, want %d", seen, n)
	}
	return time.Since(start)
}

// captureAll runs a fresh source (no positions) into a fresh log until n
// records are durable.
func captureAll(b *testing.B, endpoint string, n int) (time.Duration, uint64) {
	b.Helper()
	b.StopTimer()
	l := openLog(b, b.TempDir())
	src, err := New(Config{Name: "bench", Tables: []string{"bench"}, Endpoint: endpoint, Credentials: localCreds(localKey), StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.StartTimer()
	start := time.Now()
	go func() { done <- src.Run(ctx, l.st) }()
	for l.st.Size() < uint64(n) {
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	calls := src.APICalls().Total()
	l.close()
	b.StartTimer()
	return took, calls
}
