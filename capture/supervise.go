package capture

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Supervisor runs a source's sessions (connect, set up, stream until an
// error) again and again: transient failures are retried after a capped
// exponential backoff, a permanent one ends Run. Every source shares it, so
// that reconnection, backoff and the states reported on /metrics behave the
// same whatever the upstream.
type Supervisor struct {
	// MinBackoff and MaxBackoff bound the delay between sessions (default
	// 500ms and 30s). The delay doubles after each failed session and
	// starts over after a session that made progress.
	MinBackoff, MaxBackoff time.Duration
	// Permanent classifies a session's error: true ends Run with it. It is
	// called once per failed session, in order, so a source may count
	// (e.g. "the slot is busy" is transient the first few times).
	Permanent func(error) bool
	// Progress receives the states and errors (may be nil).
	Progress *Progress
	// Redact removes secrets from an error's text before it is kept for
	// Stats (may be nil).
	Redact func(string) string
	Logger *slog.Logger
}

// Session is one connection to the upstream. progressed reports whether it
// got far enough (e.g. streaming started) that the backoff starts over.
type Session func(ctx context.Context) (progressed bool, err error)

// Run runs session until ctx is done (then it returns nil) or a session
// fails permanently (then it returns that error).
func (s Supervisor) Run(ctx context.Context, session Session) error {
	minB, maxB := s.MinBackoff, s.MaxBackoff
	if minB <= 0 {
		minB = 500 * time.Millisecond
	}
	if maxB <= 0 {
		maxB = 30 * time.Second
	}
	logger := s.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	setErr := func(err error) {
		if s.Progress != nil {
			s.Progress.SetError(err, s.Redact)
		}
	}
	setState := func(st string) {
		if s.Progress != nil {
			s.Progress.SetState(st)
		}
	}
	backoff := minB
	for {
		setState(StateConnecting)
		progressed, err := session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && s.Permanent != nil && s.Permanent(err) {
			setErr(err)
			setState(StateFailed)
			logger.Error("source stopped: permanent failure", "err", err)
			return err
		}
		if progressed {
			backoff = minB
		}
		if err != nil {
			setErr(err)
			logger.Warn("source session failed; reconnecting", "err", err, "retry_in", backoff)
		}
		setState(StateRetrying)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, maxB)
	}
}

// PermanentError marks err as permanent for a Supervisor whose Permanent
// function is IsPermanent: a source wraps the failures no retry can mend
// (bad credentials, a missing database, a misconfiguration).
func PermanentError(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err was marked by PermanentError.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
