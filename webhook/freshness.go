package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	toolscache "k8s.io/client-go/tools/cache"
)

// StaleAfter is how long a watch may fail before meshguard stops trusting its cache: then
// it reports not ready and refuses the security kinds rather than judge them on a view
// that may miss changes.
const StaleAfter = 10 * time.Second

// Freshness tracks the watches that failed, until they deliver again. The informers
// retry on their own; a cache whose watch keeps failing would otherwise judge on as if
// current.
type Freshness struct {
	mu    sync.Mutex
	stale map[*toolscache.Reflector]failedWatch
	// unreachable is since when the API server has not answered Watch's checks, and why.
	unreachable    time.Time
	unreachableErr error
	now            func() time.Time
}

type failedWatch struct {
	since time.Time
	// version is the resourceVersion the watch had reached: it moves once the watch
	// delivers again (a relist, an event, a bookmark).
	version string
	kind    string
}

// WatchErrorHandler is the cache's watch error handler: it logs as client-go does, and
// marks the watch failed unless it only closed or expired (it relists at once then).
func (f *Freshness) WatchErrorHandler(ctx context.Context, r *toolscache.Reflector, err error) {
	toolscache.DefaultWatchErrorHandler(ctx, r, err)
	if errors.Is(err, io.EOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, known := f.stale[r]; known {
		return
	}
	if f.stale == nil {
		f.stale = map[*toolscache.Reflector]failedWatch{}
	}
	f.stale[r] = failedWatch{since: f.clock(), version: r.LastSyncResourceVersion(), kind: r.TypeDescription()}
}

// Stale returns why the cache is not to be trusted, or nil: a watch has failed for longer
// than StaleAfter. A nil Freshness is always fresh.
func (f *Freshness) Stale() error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var oldest *failedWatch
	for r, w := range f.stale {
		if r.LastSyncResourceVersion() != w.version {
			delete(f.stale, r) // delivering again
			continue
		}
		if oldest == nil || w.since.Before(oldest.since) {
			oldest = &w
		}
	}
	now := f.clock()
	switch {
	case !f.unreachable.IsZero() && now.Sub(f.unreachable) >= StaleAfter:
		return fmt.Errorf("meshguard has not reached the API server for %s (%v): its view of the cluster may be out of date", now.Sub(f.unreachable).Round(time.Second), f.unreachableErr)
	case oldest != nil && now.Sub(oldest.since) >= StaleAfter:
		return fmt.Errorf("meshguard's watch of %s has failed for %s: its view of the cluster may be out of date", oldest.kind, now.Sub(oldest.since).Round(time.Second))
	}
	return nil
}

// Watch asks ping of the API server every interval until ctx ends: informers retry a
// watch the API server dropped quietly, without telling the watch error handler, so a
// lost API server is found by asking.
func (f *Freshness) Watch(ctx context.Context, interval time.Duration, ping func(context.Context) error) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pctx, cancel := context.WithTimeout(ctx, interval)
		err := ping(pctx)
		cancel()
		f.reached(err)
	}
}

// reached records the outcome of a check of the API server.
func (f *Freshness) reached(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err == nil:
		f.unreachable, f.unreachableErr = time.Time{}, nil
	case f.unreachable.IsZero():
		f.unreachable, f.unreachableErr = f.clock(), err
	}
}

func (f *Freshness) clock() time.Time {
	if f.now != nil {
		return f.now()
	}
	return time.Now()
}
