package kafka

import (
	"context"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kgoLogger hands the client's own log lines (group joins, syncs,
// heartbeat failures, revokes) to the source's slog logger: without them a
// consumer that stops receiving records says nothing about why. The
// client's Info lines (one per rebalance step) become Debug, its Debug
// lines (one per request) are dropped, its warnings and errors stay
// warnings.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel {
	switch ctx := context.Background(); {
	case k.l.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelInfo
	case k.l.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	}
	return kgo.LogLevelNone
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	l := slog.LevelDebug
	if level <= kgo.LogLevelWarn {
		l = slog.LevelWarn
	}
	k.l.Log(context.Background(), l, "kafka client: "+msg, keyvals...)
}
