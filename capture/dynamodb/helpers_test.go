package dynamodb

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stele/stele/capture"
	"github.com/stele/stele/record"
)

// Credentials for DynamoDB Local: it accepts any alphanumeric access key
// and rejects others, which is how a test gets "bad credentials".
const (
	localKey    = "local"
	localSecret = "local-secret-never-logged"
	badKey      = "bad_key"
)

func localCreds(key string) aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(key, localSecret, "")
}

// newClient is a DynamoDB client of endpoint for the tests' writes.
func newClient(endpoint string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  localCreds(localKey),
	})
}

// createTable creates a table keyed by the number attribute id, with a
// stream of the given view type (none when "").
func createTable(ctx context.Context, c *dynamodb.Client, name string, view types.StreamViewType) error {
	in := &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeN}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	}
	if view != "" {
		in.StreamSpecification = &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: view}
	}
	_, err := c.CreateTable(ctx, in)
	return err
}

// logBuffer collects a source's logs, shown when a test fails.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testLogger logs to a buffer shown when t fails.
func testLogger(t testing.TB) *slog.Logger {
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("source logs:\n%s", logs)
		}
	})
	return slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// compareSeq compares two sequence numbers (decimal strings of up to 40
// digits, too long for a uint64) by their numeric value.
func compareSeq(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// ackedBy reads a source's saved positions and says which records they
// cover: a record of a shard whose position is done, or at or before its
// saved sequence number.
func ackedBy(stateDir string) (func(*record.Record) bool, error) {
	ps, err := capture.OpenPositions(filepath.Join(stateDir, "positions"))
	if err != nil {
		return nil, err
	}
	// Keys are <table>/<stream label>/<shard>; stream/<table> names the
	// stream.
	byShard := map[string]string{}
	for k, v := range ps.All() {
		parts := strings.Split(k, "/")
		if len(parts) == 3 && parts[0] != "stream" {
			byShard[parts[0]+"/"+parts[2]] = v
		}
	}
	return func(r *record.Record) bool {
		if r.Tx == nil {
			return false
		}
		shard, seq, ok := strings.Cut(r.Tx.Position, "/")
		if !ok || shard == "gap" {
			return false
		}
		v, ok := byShard[r.Source.Table+"/"+shard]
		if !ok {
			return false
		}
		p, err := parseShardPos(v)
		if err != nil {
			return false
		}
		return p.state == stateDone || p.seq != "" && compareSeq(seq, p.seq) <= 0
	}, nil
}
