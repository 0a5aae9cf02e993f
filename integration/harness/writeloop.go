package harness

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// WriteLoop is a client writing to the cluster in a loop, as an application
// would during maintenance: one Put every Interval, each bounded by Timeout,
// recording when writes succeed so a test can measure the longest outage.
type WriteLoop struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	stats WriteStats
	last  time.Time // last success (or the start)
}

// WriteStats is what a WriteLoop saw.
type WriteStats struct {
	OK, Failed int
	// MaxGap is the longest time without a successful write, counted from
	// the start, between successes, and up to Stop; MaxGapEnd is when it
	// ended.
	MaxGap    time.Duration
	MaxGapEnd time.Time
	// Errors holds the first few failures, for test messages.
	Errors []string
}

func (s WriteStats) String() string {
	return fmt.Sprintf("%d writes ok, %d failed, longest gap %s (ended %s)",
		s.OK, s.Failed, s.MaxGap.Round(time.Millisecond), s.MaxGapEnd.Format("15:04:05.000"))
}

// StartWriteLoop starts writing prefix/<n> keys through cli until Stop.
func StartWriteLoop(cli *clientv3.Client, prefix string, interval, timeout time.Duration) *WriteLoop {
	ctx, cancel := context.WithCancel(context.Background())
	w := &WriteLoop{cancel: cancel, done: make(chan struct{}), last: time.Now()}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for n := 0; ; n++ {
			pctx, pcancel := context.WithTimeout(ctx, timeout)
			_, err := cli.Put(pctx, fmt.Sprintf("%s/%08d", prefix, n), time.Now().Format(time.RFC3339Nano))
			pcancel()
			if ctx.Err() != nil {
				return // stopped mid-write: neither success nor failure
			}
			w.record(err)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *WriteLoop) record(err error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.stats.Failed++
		if len(w.stats.Errors) < 5 {
			w.stats.Errors = append(w.stats.Errors, now.Format("15:04:05.000")+" "+err.Error())
		}
		return
	}
	w.stats.OK++
	w.gap(now)
}

// gap closes the interval since the last success. Callers hold w.mu.
func (w *WriteLoop) gap(now time.Time) {
	if g := now.Sub(w.last); g > w.stats.MaxGap {
		w.stats.MaxGap, w.stats.MaxGapEnd = g, now
	}
	w.last = now
}

// Stop ends the loop and returns what it saw; the time since the last
// success counts as a gap too, so a cluster that stopped accepting writes
// for good cannot pass.
func (w *WriteLoop) Stop() WriteStats {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gap(time.Now())
	return w.stats
}
