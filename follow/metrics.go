package follow

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stele/stele/record"
)

// Metrics reports every follower's lag in one shape, labelled by follower
// name. It is a prometheus.Collector: register it with the server's own
// registry (never the global one). Values are computed when scraped, from
// the log's size and each follower's position, so a follower stuck in its
// callback still shows its backlog growing.
//
// Followers sharing a name (one per live SSE client) are reported together:
// records and seconds behind are those of the furthest-behind one, records
// processed the sum over all of them, including those that have ended.
type Metrics struct {
	now func() time.Time

	mu        sync.Mutex
	followers map[string][]*position
	retired   map[string]uint64 // processed by followers of the name that ended
}

var (
	behindRecordsDesc = prometheus.NewDesc("stele_follow_behind_records",
		"Durable records the follower has not processed yet (the furthest-behind follower of that name).",
		[]string{"follower"}, nil)
	behindSecondsDesc = prometheus.NewDesc("stele_follow_behind_seconds",
		"Age of the oldest record the follower has not processed yet (its recorded_at), 0 when caught up.",
		[]string{"follower"}, nil)
	processedDesc = prometheus.NewDesc("stele_follow_processed_records_total",
		"Records the followers of that name have processed.",
		[]string{"follower"}, nil)
	runningDesc = prometheus.NewDesc("stele_follow_running",
		"Followers of that name currently following the log.",
		[]string{"follower"}, nil)
)

// NewMetrics returns an empty set of follower metrics. now, if nil, is
// time.Now; tests pass a fixed clock.
func NewMetrics(now func() time.Time) *Metrics {
	if now == nil {
		now = time.Now
	}
	return &Metrics{now: now, followers: map[string][]*position{}, retired: map[string]uint64{}}
}

// position is one follower's progress, written by its own goroutine and
// read by scrapes.
type position struct {
	log       Log
	next      atomic.Uint64
	processed atomic.Uint64
	// external, if set, is the follower's position kept elsewhere (Observe).
	external func() uint64
	start    uint64
}

func (p *position) advance(next, n uint64) {
	p.next.Store(next)
	p.processed.Add(n)
}

func (p *position) load() (next, processed uint64) {
	if p.external != nil {
		next = p.external()
		return next, next - min(next, p.start)
	}
	return p.next.Load(), p.processed.Load()
}

func (m *Metrics) track(name string, log Log, from uint64) *position {
	p := &position{log: log}
	p.next.Store(from)
	m.add(name, p)
	return p
}

func (m *Metrics) add(name string, p *position) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.followers[name] = append(m.followers[name], p)
	if _, ok := m.retired[name]; !ok {
		m.retired[name] = 0
	}
}

func (m *Metrics) untrack(name string, p *position) {
	m.mu.Lock()
	defer m.mu.Unlock()
	list := m.followers[name]
	for i, q := range list {
		if q == p {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	m.followers[name] = list
	_, processed := p.load()
	m.retired[name] += processed
}

// Observe reports a follower that does not run through a Follower under
// name, with the same metrics: the index, which the store feeds from memory
// (see logstore), reports its position with next. stop ends the reporting.
func (m *Metrics) Observe(name string, log Log, next func() uint64) (stop func()) {
	p := &position{log: log, external: next, start: next()}
	m.add(name, p)
	return sync.OnceFunc(func() { m.untrack(name, p) })
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{behindRecordsDesc, behindSecondsDesc, processedDesc, runningDesc} {
		ch <- d
	}
}

// Lag is one follower name's progress at a moment.
type Lag struct {
	Name string
	// BehindRecords and BehindSeconds are those of the furthest-behind
	// follower of the name (0 when all are caught up).
	BehindRecords uint64
	BehindSeconds float64
	// Processed counts records handled by every follower of the name,
	// including those that have ended.
	Processed uint64
	// Running is how many followers of the name follow the log now.
	Running int
}

// Lags returns every follower name's progress, sorted by name, for
// /metrics and `stele status`.
func (m *Metrics) Lags() []Lag {
	m.mu.Lock()
	type named struct {
		name    string
		list    []*position
		retired uint64
	}
	all := make([]named, 0, len(m.retired))
	for name, retired := range m.retired {
		all = append(all, named{name, append([]*position(nil), m.followers[name]...), retired})
	}
	m.mu.Unlock()
	now := m.now()
	lags := make([]Lag, 0, len(all))
	for _, n := range all {
		l := Lag{Name: n.name, Processed: n.retired, Running: len(n.list)}
		for _, p := range n.list {
			next, done := p.load()
			l.Processed += done
			size := p.log.Size()
			if next >= size {
				continue
			}
			l.BehindRecords = max(l.BehindRecords, size-next)
			l.BehindSeconds = max(l.BehindSeconds, age(p.log, next, now))
		}
		lags = append(lags, l)
	}
	slices.SortFunc(lags, func(a, b Lag) int { return strings.Compare(a.Name, b.Name) })
	return lags
}

// Lag returns the progress of the followers named name; ok is false if no
// follower of that name ever ran.
func (m *Metrics) Lag(name string) (l Lag, ok bool) {
	for _, l := range m.Lags() {
		if l.Name == name {
			return l, true
		}
	}
	return Lag{}, false
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, l := range m.Lags() {
		ch <- prometheus.MustNewConstMetric(behindRecordsDesc, prometheus.GaugeValue, float64(l.BehindRecords), l.Name)
		ch <- prometheus.MustNewConstMetric(behindSecondsDesc, prometheus.GaugeValue, l.BehindSeconds, l.Name)
		ch <- prometheus.MustNewConstMetric(processedDesc, prometheus.CounterValue, float64(l.Processed), l.Name)
		ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, float64(l.Running), l.Name)
	}
}

// age is how long ago the record at seq was appended; 0 if it cannot be
// read (a scrape must not fail because of one record; the follower itself
// reports the read error).
func age(log Log, seq uint64, now time.Time) float64 {
	raw, err := log.ReadRaw(seq)
	if err != nil {
		return 0
	}
	r, err := record.Decode(raw)
	if err != nil || r.RecordedAt.IsZero() {
		return 0
	}
	return max(0, now.Sub(r.RecordedAt).Seconds())
}
