package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"time"
)

// Progress of the long commands (verify, export, reindex, projections
// rebuild, bench, snapshot) goes to stderr: on a terminal a bar with the
// rate and the time left, redrawn a few times a second; otherwise a plain
// line every plainEvery (STELE_PROGRESS_INTERVAL overrides it) and one
// when the work is done, if a line was printed before.
const (
	barEvery   = 200 * time.Millisecond
	plainEvery = 5 * time.Second
	barWidth   = 24
)

// progress reports how far one long command has got. Its methods are safe
// for concurrent use; a nil *progress reports nothing.
type progress struct {
	w        io.Writer
	terminal bool
	every    time.Duration
	now      func() time.Time

	mu      sync.Mutex
	label   string
	unit    string
	div     float64 // done and total are divided by it for display
	start   time.Time
	last    time.Time
	printed bool // a plain line, or a bar still on screen
}

// newProgress reports on w, as a bar when terminal is set. unit names what
// is counted ("records"); div scales the counts for display (1e6 with
// unit "MB" for bytes).
func newProgress(w io.Writer, terminal bool, label, unit string, div float64) *progress {
	p := &progress{w: w, terminal: terminal, every: plainEvery, now: time.Now}
	if terminal {
		p.every = barEvery
	}
	if v := os.Getenv("STELE_PROGRESS_INTERVAL"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			p.every = d
		}
	}
	p.phase(label, unit, div)
	return p
}

// stderrProgress is newProgress on standard error.
func stderrProgress(label, unit string, div float64) *progress {
	return newProgress(os.Stderr, isTerminal(os.Stderr), label, unit, div)
}

// phase starts a new stretch of work under another label, with its own
// rate and time left (bench's phases).
func (p *progress) phase(label, unit string, div float64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if div <= 0 {
		div = 1
	}
	if p.label != label || p.unit != unit {
		p.label, p.unit, p.div = label, unit, div
		p.start = p.now()
		p.last = p.start
		if !p.terminal {
			p.printed = false
		}
	}
}

// update reports done of total; total 0 means unknown (no bar, no time
// left).
func (p *progress) update(done, total int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	complete := total > 0 && done >= total
	if now.Sub(p.last) < p.every && !(complete && p.printed) {
		return
	}
	p.last = now
	line := p.render(done, total, now.Sub(p.start))
	if p.terminal {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
	p.printed = !complete || p.terminal
}

// finish clears the bar from a terminal; plain lines stay.
func (p *progress) finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal && p.printed {
		fmt.Fprint(p.w, "\r\033[K")
	}
	p.printed = false
}

// render is one report: bar (terminal only, known total), share, counts,
// rate and time left.
func (p *progress) render(done, total int64, elapsed time.Duration) string {
	d, t := float64(done)/p.div, float64(total)/p.div
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = d / s
	}
	var b strings.Builder
	b.WriteString(p.label)
	if total <= 0 {
		fmt.Fprintf(&b, ": %s %s, %s %s/s", count(d), p.unit, count(rate), p.unit)
		return b.String()
	}
	share := math.Min(d/t, 1)
	eta := "?"
	if rate > 0 {
		eta = (time.Duration((t - d) / rate * float64(time.Second))).Round(time.Second).String()
	}
	if p.terminal {
		filled := int(share * barWidth)
		fmt.Fprintf(&b, " [%s%s] %3.0f%%  %s/%s %s  %s %s/s  ETA %s",
			strings.Repeat("=", filled), strings.Repeat(" ", barWidth-filled), 100*share,
			count(d), count(t), p.unit, count(rate), p.unit, eta)
		return b.String()
	}
	fmt.Fprintf(&b, ": %.0f%% (%s/%s %s, %s %s/s, ETA %s)", 100*share, count(d), count(t), p.unit, count(rate), p.unit, eta)
	return b.String()
}

// count prints a figure shortly: 950, 12.3k, 4.56M.
func count(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case a >= 100 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}
