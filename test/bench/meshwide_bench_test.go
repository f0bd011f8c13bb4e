package main

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshguard/meshguard/webhook"
)

// BenchmarkMeshWideReview measures a review of a mesh-wide RequestAuthentication (in the
// root namespace, with and without a selector): the one review whose cost follows the
// cluster, as the policy selects workloads in every namespace.
func BenchmarkMeshWideReview(b *testing.B) {
	reviews, err := loadReviews()
	if err != nil {
		b.Fatal(err)
	}
	i := slices.IndexFunc(reviews, func(r review) bool { return r.name == "ra-create" })
	for _, pods := range []int{1000, 10000, 100000} {
		_, srv := server(b, benchShape(pods))
		for _, c := range []struct {
			selector map[string]any
			rule     string // the warning the review must give
		}{
			{map[string]any{"matchLabels": map[string]any{"app": "app-0"}}, "MG405"}, // selects in every namespace
			{nil, "MG301"}, // no AuthorizationPolicy requires a token everywhere
		} {
			selector := c.selector
			var ar admissionv1.AdmissionReview
			if err := json.Unmarshal(reviews[i].Review, &ar); err != nil {
				b.Fatal(err)
			}
			var ra map[string]any
			if err := json.Unmarshal(ar.Request.Object.Raw, &ra); err != nil {
				b.Fatal(err)
			}
			ra["metadata"].(map[string]any)["namespace"] = rootNamespace
			spec := ra["spec"].(map[string]any)
			if selector == nil {
				delete(spec, "selector")
			} else {
				spec["selector"] = selector
			}
			ar.Request.Namespace = rootNamespace
			ar.Request.Object.Raw, _ = json.Marshal(ra)
			req := admission.Request{AdmissionRequest: *ar.Request}
			review := func(b *testing.B, srv *webhook.Server) {
				resp := srv.Validating().Handle(context.Background(), req)
				if !resp.Allowed || !slices.ContainsFunc(resp.Warnings, func(w string) bool { return strings.HasPrefix(w, c.rule) }) {
					b.Fatalf("allowed %v, warnings %q", resp.Allowed, resp.Warnings)
				}
			}
			name := fmt.Sprintf("pods=%d/selector=%v", pods, selector != nil)
			// Warm: the views of every namespace are kept, as in a webhook that has served a
			// mesh-wide review before.
			b.Run(name+"/views=warm", func(b *testing.B) {
				review(b, srv)
				b.ReportAllocs()
				for b.Loop() {
					review(b, srv)
				}
			})
			// Cold: the first mesh-wide review of a webhook, which builds the workloads view of
			// every namespace (and the policies views no review has read yet).
			// It reports too the heap the views it builds keep (kept-MB).
			b.Run(name+"/views=cold", func(b *testing.B) {
				b.ReportAllocs()
				var kept uint64
				for b.Loop() {
					b.StopTimer()
					fresh := freshViews(b, srv)
					before := liveHeap()
					b.StartTimer()
					review(b, fresh)
					b.StopTimer()
					kept += liveHeap() - before
					runtime.KeepAlive(fresh)
					b.StartTimer()
				}
				b.ReportMetric(float64(kept)/float64(b.N)/1e6, "kept-MB")
			})
		}
	}
}

// freshViews returns a server like srv whose views over its cache keep nothing yet.
func freshViews(b *testing.B, srv *webhook.Server) *webhook.Server {
	views := webhook.NewViews(srv.Reader)
	if err := views.Watch(b.Context(), srv.Reader.(cache.Informers), installed()); err != nil {
		b.Fatal(err)
	}
	return &webhook.Server{Engine: srv.Engine, Reader: srv.Reader, Views: views, Synced: srv.Synced, Log: srv.Log}
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
