package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/webhook"
)

// TestMain silences controller-runtime's logger, as main does: its admission handler
// otherwise complains, with a stack trace, in the middle of benchmark output.
func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

// handlers serves meshguard's webhooks and the null handler over a synthetic cluster of
// the given size, without TLS: the hot path of one review.
func handlers(tb testing.TB, pods int) http.Handler {
	mux, _ := server(tb, benchShape(pods))
	return mux
}

// benchShape is the synthetic cluster of the benchmarks: Pods in namespaces of 20, four
// policies each.
func benchShape(pods int) shape {
	return shape{pods: pods, podsPerNamespace: 20, policiesPerNamespace: 4}
}

// server returns meshguard's webhooks and the null handler, served, over a synthetic
// cluster of the given size, and meshguard's own Server behind them.
func server(tb testing.TB, s shape) (http.Handler, *webhook.Server) {
	ctx, cancel := context.WithCancel(context.Background())
	c, _, wait, err := startCache(ctx, s)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cancel(); wait() })
	views := webhook.NewViews(c)
	if err := views.Watch(ctx, c, installed()); err != nil {
		tb.Fatal(err)
	}
	var synced atomic.Bool
	synced.Store(true)
	srv := &webhook.Server{Engine: policy.NewEngine(), Reader: c, Views: views, Synced: &synced, Log: logr.Discard()}
	mux := http.NewServeMux()
	mux.Handle(webhook.ValidatePath, &ctrlwebhook.Admission{Handler: srv.Validating()})
	mux.Handle(webhook.MutatePath, &ctrlwebhook.Admission{Handler: srv.Mutating()})
	mux.Handle(nullPath, &ctrlwebhook.Admission{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	})})
	return mux, srv
}

func serveOne(h http.Handler, path string, body []byte) []byte {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	return rec.Body.Bytes()
}

// TestRecordedReviews: every recorded review gets its expected verdict from meshguard, and
// is allowed by the null handler, so the load generator measures what it claims to.
func TestRecordedReviews(t *testing.T) {
	reviews, err := loadReviews()
	if err != nil {
		t.Fatal(err)
	}
	if len(reviews) != 5 {
		t.Fatalf("want the 5 recorded reviews, found %d", len(reviews))
	}
	h := handlers(t, 1000)
	for _, r := range reviews {
		if err := r.verdict(serveOne(h, r.Path, r.Review)); err != nil {
			t.Error(err)
		}
		if err := (review{name: r.name, Allowed: true}).verdict(serveOne(h, nullPath, r.Review)); err != nil {
			t.Errorf("null handler: %v", err)
		}
	}
}

// BenchmarkReview measures one review through controller-runtime's admission handler, at
// three cluster sizes (its cost must not grow with the cluster), and the null handler given
// the same review.
func BenchmarkReview(b *testing.B) {
	reviews, err := loadReviews()
	if err != nil {
		b.Fatal(err)
	}
	for _, pods := range []int{1000, 10000, 100000} {
		h := handlers(b, pods)
		for _, r := range reviews {
			// The floor: the null handler given the same review.
			null := review{name: r.name, Path: nullPath, Allowed: true, Review: r.Review}
			for _, run := range []struct {
				handler string
				r       review
			}{{"meshguard", r}, {"null", null}} {
				r := run.r
				b.Run(fmt.Sprintf("pods=%d/%s/%s", pods, r.name, run.handler), func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if err := r.verdict(serveOne(h, r.Path, r.Review)); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// BenchmarkHandle measures meshguard's own work on one review, which the null handler
// does not do: its admission handler given the request controller-runtime has decoded.
// The review's HTTP, TLS and AdmissionReview decoding are the floor both handlers share.
func BenchmarkHandle(b *testing.B) {
	reviews, err := loadReviews()
	if err != nil {
		b.Fatal(err)
	}
	for _, pods := range []int{1000, 10000, 100000} {
		_, srv := server(b, benchShape(pods))
		for _, r := range reviews {
			var ar admissionv1.AdmissionReview
			if err := json.Unmarshal(r.Review, &ar); err != nil {
				b.Fatal(err)
			}
			req := admission.Request{AdmissionRequest: *ar.Request}
			h := srv.Validating()
			if r.Path == webhook.MutatePath {
				h = srv.Mutating()
			}
			b.Run(fmt.Sprintf("pods=%d/%s", pods, r.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if resp := h.Handle(context.Background(), req); resp.Allowed != r.Allowed || (len(resp.Patches) > 0) != r.Patch {
						b.Fatalf("allowed %v with %d patches, want allowed %v, patch %v", resp.Allowed, len(resp.Patches), r.Allowed, r.Patch)
					}
				}
			})
		}
	}
}

// BenchmarkServe measures a review through meshguard's own server stack as `meshguard
// serve` registers it (controller-runtime's webhook mux and metrics, the limiter, the
// AdmissionReview envelope), without TLS and the socket: what a review costs the process
// beyond the bare handler's floor.
func BenchmarkServe(b *testing.B) {
	reviews, err := loadReviews()
	if err != nil {
		b.Fatal(err)
	}
	mux := serveMux(b, benchShape(1000))
	for _, r := range reviews {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := r.verdict(serveOne(mux, r.Path, r.Review)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// serveMux is meshguard's server stack as `meshguard serve` registers it, over the
// synthetic cluster s.
func serveMux(b *testing.B, s shape) http.Handler {
	_, srv := server(b, s)
	ws := ctrlwebhook.NewServer(ctrlwebhook.Options{})
	srv.Register(ws)
	return ws.WebhookMux()
}

// BenchmarkWrites measures the policy-write reviews `-writes` posts (writeReviews), in
// namespaces of the policies that protect web and no Pods, through meshguard's server stack
// as BenchmarkServe: each op is the next review of the cycle, as one of the load's
// connections posts them.
func BenchmarkWrites(b *testing.B) {
	const namespaces = 8
	versions := make([]string, namespaces)
	for n := range versions {
		versions[n] = objectMeta("", "", 0).ResourceVersion
	}
	reviews, err := writeReviews(versions)
	if err != nil {
		b.Fatal(err)
	}
	s := benchShape(1000)
	s.writes = namespaces
	mux := serveMux(b, s)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := reviews[i%len(reviews)]
		if err := r.verdict(serveOne(mux, r.Path, r.Review)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
