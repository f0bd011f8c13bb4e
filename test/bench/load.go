package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshguard/meshguard/certs"
	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/webhook"
)

// nullPath serves the floor: a handler on the same server stack that decodes the review
// and allows it, doing nothing else.
const nullPath = "/null"

//go:embed reviews/*.json
var recorded embed.FS

// review is a recorded AdmissionReview, the path the API server posts it to, and the
// verdict meshguard must give it against the synthetic cluster.
type review struct {
	name    string
	Path    string          `json:"path"`
	Allowed bool            `json:"allowed"`
	Patch   bool            `json:"patch"`
	Review  json.RawMessage `json:"review"`
}

func loadReviews() ([]review, error) {
	entries, err := recorded.ReadDir("reviews")
	if err != nil {
		return nil, err
	}
	var out []review
	for _, e := range entries {
		data, err := recorded.ReadFile(path.Join("reviews", e.Name()))
		if err != nil {
			return nil, err
		}
		var r review
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("reviews/%s: %w", e.Name(), err)
		}
		r.name = strings.TrimSuffix(e.Name(), ".json")
		out = append(out, r)
	}
	return out, nil
}

// verdict checks an AdmissionReview response against what the review expects. It looks for
// the fields rather than decoding the body, to keep the load generator's own CPU small on a
// machine it shares with the server.
func (r review) verdict(body []byte) error {
	allowed := bytes.Contains(body, []byte(`"allowed":true`))
	patched := bytes.Contains(body, []byte(`"patch":"`))
	if !bytes.Contains(body, []byte(`"kind":"AdmissionReview"`)) || allowed != r.Allowed || patched != r.Patch {
		return fmt.Errorf("allowed=%v patch=%v, want allowed=%v patch=%v: %s", allowed, patched, r.Allowed, r.Patch, body)
	}
	return nil
}

// endpoint is meshguard's HTTPS server (webhook.NewHTTPSServer) with meshguard's handlers and
// the null handler, and a keep-alive client that trusts it.
type endpoint struct {
	base string
	// bare serves the bare handler, the second floor.
	bare   string
	client *http.Client
}

func serve(ctx context.Context, reader cache.Cache, conns int) (*endpoint, error) {
	base, ca, err := serveHandlers(ctx, reader)
	if err != nil {
		return nil, err
	}
	bare, bareCA, err := startBare(ctx)
	if err != nil {
		return nil, err
	}
	e := newEndpoint(base, conns, nil, ca, bareCA)
	e.bare = bare
	return e, nil
}

// startBare serves the bare handler until ctx ends: Go's net/http over TLS (1.2 at least,
// HTTP/1.1, as meshguard's server), decoding the AdmissionReview with encoding/json and
// answering "allowed". It is the floor of any Go webhook: no routing, metrics, limits or
// judging. It returns its base URL and CA.
func startBare(ctx context.Context) (base string, ca []byte, _ error) {
	bundle, err := certs.SelfSigned([]string{"127.0.0.1"}, 24*time.Hour)
	if err != nil {
		return "", nil, err
	}
	cert, err := tls.X509KeyPair(bundle.Cert, bundle.Key)
	if err != nil {
		return "", nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var review admissionv1.AdmissionReview
			if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
				http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
				return
			}
			out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(out)
		}),
	}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	return "https://" + l.Addr().String(), bundle.CA, nil
}

// serveHandlers serves meshguard's webhooks over reader, and the null handler, until ctx
// ends; it returns the server's base URL and CA.
func serveHandlers(ctx context.Context, reader cache.Cache) (base string, ca []byte, _ error) {
	views := webhook.NewViews(reader)
	if err := views.Watch(ctx, reader, installed()); err != nil {
		return "", nil, err
	}
	var synced atomic.Bool
	synced.Store(true)
	srv := &webhook.Server{Engine: policy.NewEngine(), Reader: reader, Views: views, Synced: &synced, Log: logr.Discard(),
		Metrics: webhook.NewMetrics(prometheus.NewRegistry())}
	return startServer(ctx, func(ws ctrlwebhook.Server) {
		srv.Register(ws)
		registerNull(ws)
	})
}

// newEndpoint is a keep-alive client of the server at base, trusting cas.
func newEndpoint(base string, conns int, clientCerts []tls.Certificate, cas ...[]byte) *endpoint {
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AppendCertsFromPEM(ca)
	}
	return &endpoint{
		base: base,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, Certificates: clientCerts},
			MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
		}},
	}
}

// warmViews has meshguard judge a Pod CREATE and a RequestAuthentication CREATE in every
// namespace, as a cluster's Pod churn and policy changes do over time, so that both views
// of every namespace are built: the steady state of a long-running webhook.
func (e *endpoint) warmViews(s shape, reviews []review) error {
	for _, name := range []string{"pod-create-covered", "ra-create"} {
		i := slices.IndexFunc(reviews, func(r review) bool { return r.name == name })
		if i < 0 {
			return fmt.Errorf("no %s review to warm the views with", name)
		}
		var object map[string]any
		if err := json.Unmarshal(reviews[i].Review, &object); err != nil {
			return err
		}
		request := object["request"].(map[string]any)
		meta := request["object"].(map[string]any)["metadata"].(map[string]any)
		for n := range s.namespaces() {
			request["namespace"], meta["namespace"] = nsName(n), nsName(n)
			body, err := json.Marshal(object)
			if err != nil {
				return err
			}
			out, err := e.post(webhook.ValidatePath, body)
			if err != nil {
				return fmt.Errorf("warming %s: %w", nsName(n), err)
			}
			if !bytes.Contains(out, []byte(`"kind":"AdmissionReview"`)) {
				return fmt.Errorf("warming %s: %s", nsName(n), out)
			}
		}
	}
	return nil
}

func registerNull(ws ctrlwebhook.Server) {
	ws.Register(nullPath, &ctrlwebhook.Admission{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	})})
}

// startServer runs meshguard's HTTPS server (webhook.NewHTTPSServer) on a free loopback
// port with a self-signed certificate, serving what register adds, until ctx ends. It
// returns the server's base URL and CA.
func startServer(ctx context.Context, register func(ctrlwebhook.Server)) (base string, ca []byte, _ error) {
	bundle, err := certs.SelfSigned([]string{"127.0.0.1"}, 24*time.Hour)
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "meshguard-load-")
	if err != nil {
		return "", nil, err
	}
	go func() { <-ctx.Done(); os.RemoveAll(dir) }()
	if err := bundle.Write(dir); err != nil {
		return "", nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ws := webhook.NewHTTPSServer("127.0.0.1", port, dir, "")
	register(ws)
	go func() { _ = ws.Start(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := ws.StartedChecker()(nil); err == nil {
			return "https://127.0.0.1:" + strconv.Itoa(port), bundle.CA, nil
		} else if time.Now().After(deadline) {
			return "", nil, fmt.Errorf("the webhook server did not start: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// post sends one review to meshguard's server and returns the response body.
func (e *endpoint) post(p string, body []byte) ([]byte, error) { return e.postTo(e.base, p, body) }

func (e *endpoint) postTo(base, p string, body []byte) ([]byte, error) {
	resp, err := e.client.Post(base+p, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, out)
	}
	return out, err
}

// target is where a phase's load goes, and how its answers are checked.
type target struct {
	route func(review) string
	check func(review, []byte) error
	bare  bool // to the bare server
}

var (
	// meshguardTarget sends each review to meshguard's webhook for it and expects its verdict.
	meshguardTarget = target{route: func(r review) string { return r.Path }, check: review.verdict}
	// nullTarget sends every review to the null handler, which allows it.
	nullTarget = target{route: func(review) string { return nullPath }, check: func(r review, body []byte) error {
		return review{name: r.name, Allowed: true}.verdict(body)
	}}
	// bareTarget sends every review to the bare handler, which allows it.
	bareTarget = target{route: func(review) string { return "/" }, check: nullTarget.check, bare: true}
)

// result is the latencies of one or more load phases.
type result struct {
	latencies []time.Duration
	elapsed   time.Duration
}

func (r *result) add(o result) {
	r.latencies = append(r.latencies, o.latencies...)
	r.elapsed += o.elapsed
}

func (r result) rate() float64 { return float64(len(r.latencies)) / r.elapsed.Seconds() }

// quantile of the latencies, once sorted.
func (r result) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, int(q*float64(len(r.latencies))))]
}

// load keeps conns connections busy for d, each posting the reviews in turn to t, and
// checks every answer. It stops at the first error.
func (e *endpoint) load(reviews []review, conns int, d time.Duration, t target) (result, error) {
	var (
		mu     sync.Mutex
		all    []time.Duration
		first  error
		wg     sync.WaitGroup
		failed atomic.Bool
	)
	start := time.Now()
	stop := start.Add(d)
	for c := range conns {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			for i := c; time.Now().Before(stop) && !failed.Load(); i++ {
				r := reviews[i%len(reviews)]
				t0 := time.Now()
				base := e.base
				if t.bare {
					base = e.bare
				}
				body, err := e.postTo(base, t.route(r), r.Review)
				lat = append(lat, time.Since(t0))
				if err == nil {
					err = t.check(r, body)
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("%s: %w", r.name, err)
					}
					mu.Unlock()
					failed.Store(true)
					return
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(all)
	return result{latencies: all, elapsed: time.Since(start)}, first
}

// heapInUse is the live heap: what is allocated right after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// rssBytes is the process's resident set, and peakRSS its high-water mark, from /proc
// (0 where /proc is missing).
func rssBytes() uint64 { return procStatus("VmRSS:") }
func peakRSS() uint64  { return procStatus("VmHWM:") }

func procStatus(field string) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
