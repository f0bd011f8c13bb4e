package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
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
		_, srv := server(b, pods)
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
			h := srv.Validating()
			b.Run(fmt.Sprintf("pods=%d/selector=%v", pods, selector != nil), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					resp := h.Handle(context.Background(), req)
					if !resp.Allowed || !slices.ContainsFunc(resp.Warnings, func(w string) bool { return strings.HasPrefix(w, c.rule) }) {
						b.Fatalf("allowed %v, warnings %q", resp.Allowed, resp.Warnings)
					}
				}
			})
		}
	}
}
