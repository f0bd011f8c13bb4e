package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sync/semaphore"
)

// Limits bound what reviews take of the server, one and all together, so that no client
// can starve it: slow or huge bodies, floods of reviews, or reviews of unbounded work.
type Limits struct {
	// MaxBody is the largest AdmissionReview read: an object and its old version, each at
	// most etcd's 1.5 MiB, and the review around them.
	MaxBody int64
	// SmallBody: bodies up to this size are read freely; larger ones reserve their size
	// from BodyBudget first, and are refused at once (503) when it is spent.
	SmallBody, BodyBudget int64
	// InFlight reviews are judged at once, and as many of Pods besides; more wait up to
	// QueueWait for a slot, then are refused (429).
	InFlight  int
	QueueWait time.Duration
	// ReadTimeout bounds reading a request's body; WriteTimeout, the whole exchange.
	ReadTimeout, WriteTimeout time.Duration
	// ReviewTimeout bounds the work of one review, whether or not the API server is still
	// waiting for it (it gives up after the webhook's timeoutSeconds, at most 30 s).
	ReviewTimeout time.Duration
	// CacheWait bounds how long a write that may open waits for the cache to show the
	// writes allowed just before it, when more are on their way than it is judged beside
	// (GitOps tools apply many at once); then it is refused, to be retried.
	CacheWait time.Duration
}

// DefaultLimits are fitted to the webhook configurations (timeouts of 3 and 5 seconds)
// and the 512 MiB memory limit of meshguard's Deployment.
func DefaultLimits() Limits {
	return Limits{
		MaxBody:       4 << 20,
		SmallBody:     64 << 10,
		BodyBudget:    64 << 20,
		InFlight:      4 * runtime.GOMAXPROCS(0),
		QueueWait:     time.Second,
		ReadTimeout:   10 * time.Second,
		WriteTimeout:  15 * time.Second,
		ReviewTimeout: 10 * time.Second,
		CacheWait:     2 * time.Second,
	}
}

// limiter applies Limits to the handlers it wraps.
type limiter struct {
	Limits
	budget *semaphore.Weighted
	// inFlight are the slots of the security kinds' reviews and the others'; Pod reviews
	// have slots of their own, so that no flood of policy writes delays a Pod past its
	// webhook's timeout (it would be admitted unlabelled).
	inFlight, podsInFlight chan struct{}
	metrics                *Metrics
}

// podReview tells whether an AdmissionReview is of a Pod, by the request's kind, which the
// API server writes at its start.
func podReview(body []byte) bool {
	return bytes.Contains(body[:min(len(body), 512)], []byte(`"kind":{"group":"","version":"v1","kind":"Pod"}`))
}

func newLimiter(l Limits, m *Metrics) *limiter {
	return &limiter{Limits: l, budget: semaphore.NewWeighted(l.BodyBudget), inFlight: make(chan struct{}, l.InFlight), podsInFlight: make(chan struct{}, l.InFlight), metrics: m}
}

// wrap reads a request's body under the limits, waits for a slot, and hands the request,
// its body in memory and its context bounded by ReviewTimeout, to h.
func (l *limiter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Deadlines are set on the connection at each request: one kept alive carries them.
		rc := http.NewResponseController(w)
		now := time.Now()
		_ = rc.SetReadDeadline(now.Add(l.ReadTimeout))
		_ = rc.SetWriteDeadline(now.Add(l.WriteTimeout))

		size := r.ContentLength
		if size < 0 {
			size = l.MaxBody // unknown: reserve the most it may be
		}
		if size > l.MaxBody {
			l.refuse(w, "too large", http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body of %d bytes is over meshguard's limit of %d", size, l.MaxBody))
			return
		}
		if size > l.SmallBody {
			if !l.budget.TryAcquire(size) {
				l.refuse(w, "busy", http.StatusServiceUnavailable, "meshguard is reading too many large requests; retry")
				return
			}
			defer l.budget.Release(size)
		}
		body, err := readBody(r, l.MaxBody)
		switch {
		case err != nil:
			l.refuse(w, "unread", http.StatusBadRequest, "reading the request body: "+err.Error())
			return
		case int64(len(body)) > l.MaxBody:
			l.refuse(w, "too large", http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is over meshguard's limit of %d bytes", l.MaxBody))
			return
		}

		slots := l.inFlight
		if podReview(body) {
			slots = l.podsInFlight
		}
		wait := time.NewTimer(l.QueueWait)
		defer wait.Stop()
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		case <-wait.C:
			w.Header().Set("Retry-After", "1")
			l.refuse(w, "busy", http.StatusTooManyRequests, "meshguard is judging as many reviews as it can; retry")
			return
		case <-r.Context().Done():
			return // the API server gave up
		}
		ctx, cancel := context.WithTimeout(r.Context(), l.ReviewTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		r.Body, r.ContentLength = heldBody{bytes.NewReader(body), body}, int64(len(body))
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
		h.ServeHTTP(w, r)
	})
}

// heldBody is a request body the limiter has read whole: readReview takes its bytes rather
// than copying them again.
type heldBody struct {
	*bytes.Reader
	bytes []byte
}

func (heldBody) Close() error { return nil }

// readBody reads a request's body, at most max bytes and one more to tell it is longer:
// into a buffer of its announced length where it has one within max (the API server's
// always do), in one read instead of a doubling buffer's.
func readBody(r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength < 0 || r.ContentLength > max {
		return io.ReadAll(io.LimitReader(r.Body, max+1))
	}
	body := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, body); err != nil {
		return nil, err
	}
	return body, nil
}

// refuse answers a request the limits turn away, quickly and without reading more of it.
func (l *limiter) refuse(w http.ResponseWriter, reason string, code int, msg string) {
	l.metrics.refused(reason)
	w.Header().Set("Connection", "close")
	http.Error(w, msg, code)
}
