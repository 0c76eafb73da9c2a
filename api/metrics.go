package api

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	appended prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, l Log, logger *slog.Logger) *metrics {
	m := &metrics{reg: reg}
	m.requests = register(reg, logger, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stele_http_requests_total",
		Help: "HTTP requests answered, by route pattern and status code.",
	}, []string{"route", "code"}))
	m.duration = register(reg, logger, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "stele_http_request_duration_seconds",
		Help:    "Time to answer an HTTP request, by route pattern.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route"}))
	m.appended = register(reg, logger, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stele_records_appended_total",
		Help: "Records newly appended through the API (resubmitted duplicates not counted).",
	}))
	register(reg, logger, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "stele_log_size",
		Help: "Number of durable records in the log.",
	}, func() float64 { return float64(l.Size()) }))
	register(reg, logger, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "stele_log_accepting_writes",
		Help: "1 while the log accepts appends, 0 while it refuses them (a full disk, or a storage failure that needs a restart; /healthz says which).",
	}, func() float64 {
		if ws, ok := l.(writeState); ok && ws.WriteErr() != nil {
			return 0
		}
		return 1
	}))
	register(reg, logger, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "stele_checkpoint_size",
		Help: "Tree size covered by the latest signed checkpoint.",
	}, func() float64 {
		if cp := l.LatestCheckpoint(); cp != nil {
			return float64(cp.Size)
		}
		return 0
	}))
	return m
}

// register adds c to reg, reusing an identical collector already there so
// that building a second Server on one registry does not panic.
func register[C prometheus.Collector](reg *prometheus.Registry, logger *slog.Logger, c C) C {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
	case errors.As(err, &are):
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
		logger.Warn("metric already registered with another type; not exported by this server", "err", err)
	default:
		logger.Warn("cannot register metric", "err", err)
	}
	return c
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// instrument counts, times and logs each request under route. quiet keeps
// 5xx answers at Debug.
func (s *Server) instrument(route string, quiet bool, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		h(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		elapsed := time.Since(start)
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
		s.metrics.duration.WithLabelValues(route).Observe(elapsed.Seconds())
		// The route, not the path: paths carry entity keys, which may be
		// personal data.
		level := slog.LevelDebug
		if rec.status >= 500 && !quiet {
			level = slog.LevelError
		}
		s.log.LogAttrs(r.Context(), level, "http request",
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.Int("status", rec.status),
			slog.Duration("duration", elapsed))
	})
}
