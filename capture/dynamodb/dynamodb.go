// Package dynamodb captures every item change of DynamoDB tables from
// their DynamoDB Streams and appends it to Stele's log as lineage records,
// exactly once, with aws-sdk-go-v2 (service/dynamodb to find each table's
// stream and check it, service/dynamodbstreams to read it). DynamoDB
// Streams keeps no consumer position, so the source keeps one per shard
// in the capture runtime's PositionStore, written only after the records
// up to it are durable.
//
// # Set-up checks
//
// Each table (by name, or a stream ARN) must have its stream enabled with
// view type NEW_AND_OLD_IMAGES: anything else is a permanent error
// (ErrSetup) naming the table and the fix, unless Config.AllowPartialImages
// accepts it (records then say which image is missing). Credentials come from the SDK's
// standard chain (environment, shared files, SSO, web identity, instance
// role) unless Config.Credentials is set; Config.Endpoint points at
// DynamoDB Local or a VPC endpoint. Rejected credentials are ErrAuth, a
// missing table ErrNoTable.
//
// # The shard graph
//
// A stream is a graph of shards: each shard has at most one parent, a
// shard closes (every ~4 hours, or when its partition splits) and its
// children carry on. The source lists every shard (DescribeStream pages of
// 100, following LastEvaluatedShardId with ExclusiveStartShardId) when a
// session starts and every Config.ListInterval; when a shard's iterator
// ends (no NextShardIterator) it asks for that shard's children with
// ShardFilter CHILD_SHARDS instead of listing the whole stream again. A
// child is read only once its parent is drained and its last records
// handed to the log before the child's, so an item's changes never land
// out of order across a split (the order KCL's
// ParentsFirstShardPrioritization enforces).
//
// Reads are scheduled, not looped: a heap of shards ordered by when each
// is due, and at most Config.Concurrency GetRecords calls in flight. A
// page with records makes its shard due again at once; an empty page (a
// normal thing on an open shard, which never says "caught up") doubles
// the shard's wait from Config.PollMin up to Config.PollMax. A closed,
// drained shard costs nothing more; done shards are never polled. So a
// steady poll cycle of PollMax costs one GetRecords per open shard, and a
// listing costs ceil(shards/100) DescribeStream calls per ListInterval,
// whatever the number of closed shards (README: measured figures).
//
// # Failures, named
//
// ExpiredIteratorException (an iterator is good for 15 minutes): a new
// iterator AFTER_SEQUENCE_NUMBER the last record read. Throttling
// (LimitExceededException, ProvisionedThroughputExceededException,
// ThrottlingException), internal errors and lost connections: that shard
// backs off, doubling from Config.MinBackoff to Config.MaxBackoff, while
// the others go on (the SDK's own retries are off for the stream, so one
// schedule decides). TrimmedDataAccessException (Stele was away past the
// stream's 24 h retention): a "gap" record in the log naming the table,
// the shard and the last sequence number held before the lost range (op
// event, after {"event": "gap", …}, actor {"id": "stele", "type":
// "system"}), counted in Stats, then reading resumes at TRIM_HORIZON. A
// shard with a stored position that is no longer in the stream at all
// gets a gap record too. Nothing is skipped silently.
//
// A table captured by name whose stream was disabled and enabled again
// (a new stream ARN, found at each listing and at the start of a session
// against the ARN the position store names): the previous stream is
// drained to its end first, then the new one is read, and the previous
// stream's positions are forgotten. A table given by stream ARN follows
// that stream only.
//
// # Records
//
// One record per stream record: op insert, update or delete from
// eventName INSERT, MODIFY or REMOVE; key from Keys; before/after from
// OldImage/NewImage mapped to JSON as attr.go describes (N exact, B
// base64, sets sorted); changed from the images; occurred_at and
// tx.commit_time from ApproximateCreationDateTime; tx.position the shard
// id and the sequence number ("shardId-…/4900…"), tx.id the eventID,
// tx.index 0 (DynamoDB Streams does not group the writes of one
// TransactWriteItems call; each is its own record). Record ids derive from
// the source, the table and tx.position, so what a crash replays is stored
// once. Items deleted by Time to Live carry actor {"id":
// "dynamodb.amazonaws.com", "type": "service"} and cause {"type":
// "ttl_expiry"}; application writes carry the actor and cause of the
// item's _stele attribute (package capture/dynamoctx has the convention
// and the Go helper).
package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"github.com/stele/stele/capture"
)

// Errors returned by Run for permanent failures; each wraps the service's
// error and says what to change.
var (
	ErrAuth    = errors.New("dynamodb source: the credentials were rejected")
	ErrNoTable = errors.New("dynamodb source: table or stream not found")
	ErrSetup   = errors.New("dynamodb source: the table's stream is not set up for capture")
	ErrConfig  = errors.New("dynamodb source: invalid configuration")
)

func permanent(err error) bool {
	for _, e := range []error{ErrAuth, ErrNoTable, ErrSetup, ErrConfig} {
		if errors.Is(err, e) {
			return true
		}
	}
	return capture.IsPermanent(err)
}

// Config configures one DynamoDB Streams source.
type Config struct {
	// Name is the source name in records (default: the first table's
	// name).
	Name string
	// Tables are the captured tables, each a table name or a stream ARN
	// (arn:aws:dynamodb:region:account:table/Name/stream/label).
	Tables []string
	// Region is the AWS region (default: the SDK's chain, AWS_REGION and
	// the shared config; us-east-1 with an Endpoint and no region).
	Region string
	// Endpoint overrides the service endpoint (DynamoDB Local
	// "http://localhost:8000", a VPC endpoint); it serves both DynamoDB
	// and DynamoDB Streams.
	Endpoint string
	// AllowPartialImages accepts a stream whose view type is not
	// NEW_AND_OLD_IMAGES: an image DynamoDB does not send is recorded as
	// {"$missing_image": {"image": "OldImage", "stream_view_type": …}},
	// and changed is left out (not known).
	AllowPartialImages bool
	// Credentials, when set, replace the SDK's standard credential chain.
	Credentials aws.CredentialsProvider
	// HTTPClient, when set, carries the SDK's requests (tests count them).
	HTTPClient aws.HTTPClient
	// StateDir holds the source's durable shard positions, in its folder
	// positions (required; stele serve uses <data>/sources/<name>).
	StateDir string
	// Concurrency is the most GetRecords (and GetShardIterator) calls in
	// flight at once (default 8).
	Concurrency int
	// PollMin and PollMax bound the wait before polling an open shard
	// again after an empty page (default 250ms and 2s); it doubles with
	// each empty page and starts over with a page of records.
	PollMin, PollMax time.Duration
	// ListInterval is how often every shard of each stream is listed, to
	// find new partitions (default 60s).
	ListInterval time.Duration
	// DescribeInterval is the least time between two DescribeStream
	// calls (default 100ms: the API allows 10 per second).
	DescribeInterval time.Duration
	// PageLimit is the most records per GetRecords (default and maximum
	// 1000).
	PageLimit int32
	// PositionInterval bounds how often the durable positions are saved
	// (default 1s); a crash replays at most that much, stored once.
	PositionInterval time.Duration
	// MinBackoff and MaxBackoff bound a throttled or failing shard's wait
	// and the reconnection delay (default 250ms and 30s).
	MinBackoff, MaxBackoff time.Duration
	// MaxShardFailures is how many failures in a row of one shard end the
	// session (which the supervisor starts again, listing every shard)
	// (default 10).
	MaxShardFailures int
	// BatchSize is the most records per sink append (default 1000).
	BatchSize int
	Logger    *slog.Logger
}

// Source is a DynamoDB Streams change-data-capture source.
type Source struct {
	cfg      Config
	logger   *slog.Logger
	progress capture.Progress
	calls    apiCounters
	gaps     atomic.Uint64
	lagNanos atomic.Int64
	position atomic.Pointer[string]

	descMu   sync.Mutex
	lastDesc time.Time

	// clients, made on the first Run.
	clientsOnce sync.Once
	ddb         *dynamodb.Client
	streams     *dynamodbstreams.Client
	clientsErr  error
}

var _ capture.Source = (*Source)(nil)

// New validates cfg and fills in defaults. It does not connect.
func New(cfg Config) (*Source, error) {
	if len(cfg.Tables) == 0 {
		return nil, fmt.Errorf("%w: tables is empty; name at least one table (or stream ARN)", ErrConfig)
	}
	seen := map[string]bool{}
	for i, t := range cfg.Tables {
		t = strings.TrimSpace(t)
		if t == "" {
			return nil, fmt.Errorf("%w: tables[%d] is empty", ErrConfig, i)
		}
		if strings.HasPrefix(t, "arn:") {
			if _, err := tableOfStreamARN(t); err != nil {
				return nil, fmt.Errorf("%w: tables[%d]: %w", ErrConfig, i, err)
			}
		}
		if seen[t] {
			return nil, fmt.Errorf("%w: tables[%d]: %q is listed twice", ErrConfig, i, t)
		}
		seen[t] = true
		cfg.Tables[i] = t
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%w: endpoint %q: want http://host:port or https://host", ErrConfig, cfg.Endpoint)
		}
	}
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("%w: state_dir is empty; the source keeps its shard positions there", ErrConfig)
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Tables[0]
		if t, err := tableOfStreamARN(cfg.Name); err == nil {
			cfg.Name = t
		}
	}
	if cfg.PageLimit <= 0 || cfg.PageLimit > 1000 {
		cfg.PageLimit = 1000
	}
	defaults := []struct {
		d   *time.Duration
		def time.Duration
	}{
		{&cfg.PollMin, 250 * time.Millisecond}, {&cfg.PollMax, 2 * time.Second},
		{&cfg.ListInterval, time.Minute}, {&cfg.DescribeInterval, 100 * time.Millisecond}, {&cfg.PositionInterval, time.Second},
		{&cfg.MinBackoff, 250 * time.Millisecond}, {&cfg.MaxBackoff, 30 * time.Second},
	}
	for _, d := range defaults {
		if *d.d <= 0 {
			*d.d = d.def
		}
	}
	cfg.PollMax = max(cfg.PollMax, cfg.PollMin)
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.MaxShardFailures <= 0 {
		cfg.MaxShardFailures = 10
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Source{cfg: cfg}
	s.logger = cfg.Logger.With("source", cfg.Name, "kind", Kind)
	return s, nil
}

// tableOfStreamARN is the table name in a stream ARN.
func tableOfStreamARN(arn string) (string, error) {
	// arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2026-01-01T00:00:00.000
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[2] != "dynamodb" {
		return "", fmt.Errorf("stream ARN %q: want arn:aws:dynamodb:region:account:table/NAME/stream/LABEL", arn)
	}
	res := strings.Split(parts[5], "/")
	if len(res) != 4 || res[0] != "table" || res[1] == "" || res[2] != "stream" || res[3] == "" {
		return "", fmt.Errorf("stream ARN %q: resource %q: want table/NAME/stream/LABEL", arn, parts[5])
	}
	return res[1], nil
}

// Name returns the source name.
func (s *Source) Name() string { return s.cfg.Name }

// Config returns the configuration with defaults filled in.
func (s *Source) Config() Config { return s.cfg }

func (s *Source) clients(ctx context.Context) (*dynamodb.Client, *dynamodbstreams.Client, error) {
	s.clientsOnce.Do(func() {
		var opts []func(*config.LoadOptions) error
		region := s.cfg.Region
		if region == "" && s.cfg.Endpoint != "" {
			region = "us-east-1"
		}
		if region != "" {
			opts = append(opts, config.WithRegion(region))
		}
		if s.cfg.Credentials != nil {
			opts = append(opts, config.WithCredentialsProvider(s.cfg.Credentials))
		}
		if s.cfg.HTTPClient != nil {
			opts = append(opts, config.WithHTTPClient(s.cfg.HTTPClient))
		}
		awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			s.clientsErr = fmt.Errorf("%w: AWS configuration: %w", ErrConfig, err)
			return
		}
		if awsCfg.Region == "" {
			s.clientsErr = fmt.Errorf("%w: no AWS region: set region in the source's configuration or AWS_REGION", ErrConfig)
			return
		}
		s.ddb = dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) {
			if s.cfg.Endpoint != "" {
				o.BaseEndpoint = aws.String(s.cfg.Endpoint)
			}
		})
		s.streams = dynamodbstreams.NewFromConfig(awsCfg, func(o *dynamodbstreams.Options) {
			if s.cfg.Endpoint != "" {
				o.BaseEndpoint = aws.String(s.cfg.Endpoint)
			}
			// Throttling and retries are the shard scheduler's: one
			// schedule decides when a shard is read again.
			o.Retryer = aws.NopRetryer{}
		})
	})
	return s.ddb, s.streams, s.clientsErr
}

// Run captures changes into sink until ctx is done. Lost connections and
// throttling are retried; a permanent failure (ErrAuth, ErrNoTable,
// ErrSetup, ErrConfig) is returned.
func (s *Source) Run(ctx context.Context, sink capture.Sink) error {
	st, err := openState(s.cfg.StateDir)
	if err != nil {
		s.progress.SetError(err, nil)
		s.progress.SetState(capture.StateFailed)
		return err
	}
	sup := capture.Supervisor{
		MinBackoff: s.cfg.MinBackoff, MaxBackoff: s.cfg.MaxBackoff,
		Progress: &s.progress, Logger: s.logger, Permanent: permanent,
	}
	err = sup.Run(ctx, func(ctx context.Context) (bool, error) { return s.session(ctx, sink, st) })
	if serr := st.save(context.WithoutCancel(ctx), nil); serr != nil {
		s.logger.Error("saving the shard positions failed; a restart replays from the previous ones (nothing is stored twice)", "err", serr)
	}
	return err
}

// Stats returns the source's current figures: the runtime's capture.Stats,
// LagSeconds the largest per-shard lag (the age, when it was read, of the
// newest record of each shard's last page), Position a summary of the
// durable shard positions.
func (s *Source) Stats() capture.Stats {
	st := s.progress.Snapshot()
	st.LagSeconds = max(st.LagSeconds, time.Duration(s.lagNanos.Load()).Seconds())
	if p := s.position.Load(); p != nil {
		st.Position = *p
	}
	return st
}

// Gaps counts the gap records written (records lost to the stream's
// retention before they were read).
func (s *Source) Gaps() uint64 { return s.gaps.Load() }

// APICalls are the DynamoDB Streams calls made since the source was
// created.
type APICalls struct {
	DescribeStream, GetShardIterator, GetRecords uint64
}

// Total is the sum of the calls.
func (c APICalls) Total() uint64 { return c.DescribeStream + c.GetShardIterator + c.GetRecords }

type apiCounters struct {
	describe, iterator, records atomic.Uint64
}

// APICalls returns the calls made so far.
func (s *Source) APICalls() APICalls {
	return APICalls{s.calls.describe.Load(), s.calls.iterator.Load(), s.calls.records.Load()}
}
