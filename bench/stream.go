package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/stele/stele/publish"
	"github.com/stele/stele/record"
)

// StreamResults are the ingest figures with the lineage stream on and off,
// measured in alternation on fresh stores: the full stack as `stele serve`
// runs it (log, index and, when on, the embedded NATS JetStream with the
// publisher following the log), batches of 1,000 from one producer.
type StreamResults struct {
	// OffSec and OnSec are the acknowledged (durable) append rates.
	OffSec, OnSec float64
	// PublishedSec is the rate at which the stream received the same
	// records with JetStream's acks: records over the time from the first
	// append until the last record was acknowledged.
	PublishedSec float64
	// HeldSec is the median time per run the publisher held off for the
	// burst of appends (its flow control), and CaughtUpSec the median
	// time from the last append until the stream had every record.
	HeldSec, CaughtUpSec float64
	// OffPeakRSS and OnPeakRSS are the median peak RSS of each mode's
	// runs, in bytes, and OffRSSRange and OnRSSRange their lowest and
	// highest.
	OffPeakRSS, OnPeakRSS   int64
	OffRSSRange, OnRSSRange [2]int64
	// Rounds is how many alternating rounds the medians are of.
	Rounds int
	// RSSLabel says what the RSS figures are.
	RSSLabel string
}

// Lines are the report's lines.
func (s *StreamResults) Lines() []string {
	return []string{
		fmt.Sprintf("ingest, lineage stream on  %10.0f records/s durable   (%.2fx the same run with it off at %.0f records/s; full stack, batches of 1,000, median of %d)",
			s.OnSec, s.OnSec/s.OffSec, s.OffSec, s.Rounds),
		fmt.Sprintf("lineage stream published   %10.0f records/s acked     (%.2fx the ingest rate with it on; the publisher held off %.2fs for the burst and had every record %.2fs after the last append)",
			s.PublishedSec, s.PublishedSec/s.OnSec, s.HeldSec, s.CaughtUpSec),
		fmt.Sprintf("peak RSS, stream on / off  %s / %s (median of each mode's runs; on %s-%s, off %s-%s; %s)", mib(s.OnPeakRSS), mib(s.OffPeakRSS),
			mib(s.OnRSSRange[0]), mib(s.OnRSSRange[1]), mib(s.OffRSSRange[0]), mib(s.OffRSSRange[1]), s.RSSLabel),
	}
}

// StreamIngest measures ingest with the lineage stream on and off,
// alternating which goes first in each round, and reports medians.
func StreamIngest(ctx context.Context, opts Options, rounds int) (*StreamResults, error) {
	if rounds <= 0 {
		rounds = 3
	}
	templates := make([]record.Record, 1000)
	for i := range templates {
		templates[i] = *Record(i, 100_000)
	}
	var off, on, pub, held, caught []float64
	var offRSS, onRSS []int64
	var rss rssMeter
	for r := range rounds {
		for k := range 2 {
			stream := (r+k)%2 == 1
			rss.Start()
			run, err := streamRun(ctx, opts, templates, stream, filepath.Join(opts.Dir, fmt.Sprintf("stream-%t-%d", stream, r)))
			peak := rss.Peak()
			if err != nil {
				return nil, err
			}
			ack := run.ack
			if stream {
				on, pub, onRSS = append(on, ack), append(pub, run.published), append(onRSS, peak)
				held, caught = append(held, run.held.Seconds()), append(caught, run.caughtUp.Seconds())
			} else {
				off, offRSS = append(off, ack), append(offRSS, peak)
			}
		}
	}
	return &StreamResults{OffSec: medianOf(off), OnSec: medianOf(on), PublishedSec: medianOf(pub), HeldSec: medianOf(held), CaughtUpSec: medianOf(caught),
		OffPeakRSS: medianOf(offRSS), OnPeakRSS: medianOf(onRSS), Rounds: rounds, RSSLabel: rss.Label(),
		OffRSSRange: [2]int64{slices.Min(offRSS), slices.Max(offRSS)}, OnRSSRange: [2]int64{slices.Min(onRSS), slices.Max(onRSS)}}, nil
}

// streamFigures are one run's: the acknowledged rate and, with the stream
// on, the rate at which JetStream acknowledged the records, how long the
// publisher held off and how long after the last append it caught up.
type streamFigures struct {
	ack, published float64
	held, caughtUp time.Duration
}

// streamRun appends opts.Throughput records to a fresh stack.
func streamRun(ctx context.Context, opts Options, templates []record.Record, stream bool, dir string) (streamFigures, error) {
	var none streamFigures
	st, err := openStack(ctx, dir)
	if err != nil {
		return none, err
	}
	defer st.close()
	var p *publish.Publisher
	if stream {
		emb, err := publish.StartEmbedded(publish.EmbeddedConfig{Dir: filepath.Join(dir, "nats")})
		if err != nil {
			return none, err
		}
		defer emb.Shutdown()
		nc, err := emb.Connect()
		if err != nil {
			return none, err
		}
		defer nc.Close()
		if p, err = publish.New(publish.Config{Log: st.store, Conn: nc}); err != nil {
			return none, err
		}
		pctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = p.Run(pctx)
		}()
		defer func() {
			cancel()
			<-done
		}()
	}
	phase := "stream off"
	if stream {
		phase = "stream on"
	}
	start := time.Now()
	d, err := timedAppends(ctx, opts, st.store, 1, templates, phase)
	if err != nil {
		return none, err
	}
	n := float64(opts.Throughput / 1000 * 1000)
	if p == nil {
		return streamFigures{ack: n / d.Seconds()}, nil
	}
	size, appended := st.store.Size(), time.Now()
	for p.Published() < size {
		if time.Since(start) > 10*time.Minute {
			return none, errors.New("the lineage stream did not catch up with the log within 10 minutes")
		}
		select {
		case <-ctx.Done():
			return none, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return streamFigures{ack: n / d.Seconds(), published: n / time.Since(start).Seconds(), held: p.Held(), caughtUp: time.Since(appended)}, nil
}
