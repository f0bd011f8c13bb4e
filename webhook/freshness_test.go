package webhook

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	toolscache "k8s.io/client-go/tools/cache"
)

// TestFreshness: a watch failing for StaleAfter makes the cache stale; a watch that only
// closed or expired (it relists at once) does not.
func TestFreshness(t *testing.T) {
	now := time.Unix(0, 0)
	f := &Freshness{now: func() time.Time { return now }}
	r := toolscache.NewReflector(&toolscache.ListWatch{}, &corev1.Pod{}, toolscache.NewStore(toolscache.MetaNamespaceKeyFunc), 0)
	ctx := context.Background()
	f.WatchErrorHandler(ctx, r, io.EOF)
	f.WatchErrorHandler(ctx, r, apierrors.NewResourceExpired("too old"))
	now = now.Add(time.Hour)
	if err := f.Stale(); err != nil {
		t.Errorf("a watch that closed or expired: %v", err)
	}
	f.WatchErrorHandler(ctx, r, errors.New("dial tcp 10.0.0.1:443: connect: connection refused"))
	if err := f.Stale(); err != nil {
		t.Errorf("stale at once: %v", err)
	}
	now = now.Add(StaleAfter)
	if err := f.Stale(); err == nil {
		t.Error("a watch failing for StaleAfter: not stale")
	}
	// An API server that does not answer, for StaleAfter; then answers again.
	f = &Freshness{now: func() time.Time { return now }}
	f.reached(errors.New("connection refused"))
	now = now.Add(StaleAfter / 2)
	f.reached(errors.New("connection refused"))
	if err := f.Stale(); err != nil {
		t.Errorf("stale at once: %v", err)
	}
	now = now.Add(StaleAfter / 2)
	if err := f.Stale(); err == nil {
		t.Error("an API server unreached for StaleAfter: not stale")
	}
	f.reached(nil)
	if err := f.Stale(); err != nil {
		t.Errorf("reached again: %v", err)
	}
	if (*Freshness)(nil).Stale() != nil {
		t.Error("a nil Freshness is stale")
	}
}
