package products

import (
	"fmt"
	"testing"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/mesh/meshtest"
)

// explainCluster is a cluster of 10,000 Pods in 100 namespaces, each namespace with a
// RequestAuthentication and an ALLOW policy requiring its tokens for half its Pods.
func explainCluster(b *testing.B) *mesh.Snapshot {
	s := mesh.NewSnapshot()
	for n := range 100 {
		ns := fmt.Sprintf("team-%d", n)
		s.Add(meshtest.RA(b, ns, "jwt", `{"selector":{"matchLabels":{"tier":"api"}},"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys","audiences":["api"]}]}`))
		s.Add(meshtest.AP(b, ns, "require-jwt", `{"selector":{"matchLabels":{"tier":"api"}},"rules":[{"from":[{"source":{"requestPrincipals":["https://idp.example.com/*"]}}]},{"to":[{"operation":{"paths":["/healthz"]}}]}]}`))
		for i := range 100 {
			tier := "api"
			if i%2 == 1 {
				tier = "web"
			}
			s.Add(meshtest.Pod(ns, fmt.Sprintf("app-%d", i), map[string]string{"app": fmt.Sprintf("app-%d", i%10), "tier": tier}))
		}
	}
	return s
}

// BenchmarkExplain: one request explained, in a cluster of 10,000 Pods.
func BenchmarkExplain(b *testing.B) {
	st := explainCluster(b)
	w := st.Workloads("team-42", map[string]string{"tier": "api"})[0]
	req := Request{Method: "GET", Path: "/orders", FromPrincipal: "cluster.local/ns/team-7/sa/default",
		Token: &dataplane.Token{Claims: map[string][]string{"iss": {"https://idp.example.com"}, "sub": {"alice"}, "aud": {"api"}}}}
	b.ReportAllocs()
	for b.Loop() {
		if e, err := Explain(st, "istio-system", w, ViaDefault, req); err != nil || e.Verdict != dataplane.VerdictAllow {
			b.Fatal(e, err)
		}
	}
}

// BenchmarkCoverage: the coverage of every workload of a cluster of 10,000 Pods.
func BenchmarkCoverage(b *testing.B) {
	st := explainCluster(b)
	b.ReportAllocs()
	for b.Loop() {
		counts := map[string]int{}
		for _, w := range Covered(st, "") {
			counts[CoverageOf(st, "istio-system", w).Verdict]++
		}
		if counts[Partial] != 5000 || counts[Open] != 5000 {
			b.Fatal(counts)
		}
	}
}
