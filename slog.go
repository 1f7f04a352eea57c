package kannuki

import (
	"context"
	"log/slog"
)

// slogHookOf is Options.Logger's hook: debug for attempts, waits, grants
// and releases, info for locks not acquired, warn for lost locks and
// deadlocks. The key is the "key" attribute. A nil logger logs nothing. The
// context is passed to the logger, so handlers can pick up trace ids.
func slogHookOf(logger *slog.Logger) Hook {
	if logger == nil {
		return nil
	}
	return slogHook{logger}
}

type slogHook struct{ l *slog.Logger }

func (h slogHook) LockEvent(ctx context.Context, e Event) {
	level := slog.LevelDebug
	switch {
	case e.Kind == EventLost, e.Reason == ReasonDeadlock:
		level = slog.LevelWarn
	case e.Kind == EventNotAcquired, e.Kind == EventSkipped:
		level = slog.LevelInfo
	}
	if !h.l.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{slog.String("key", e.Key), slog.String("mode", e.Mode.String())}
	switch e.Kind {
	case EventAcquired, EventWaiting:
		attrs = append(attrs, slog.Duration("wait", e.Wait))
	case EventNotAcquired:
		attrs = append(attrs, slog.String("reason", e.Reason.String()), slog.Duration("wait", e.Wait))
	case EventReleased, EventLost:
		attrs = append(attrs, slog.Duration("hold", e.Hold))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	h.l.LogAttrs(ctx, level, "kannuki: "+e.Kind.String(), attrs...)
}
