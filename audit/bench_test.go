package audit

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshguard/meshguard/policy"
)

// auditCluster is a cluster of 10,000 Pods and 2,000 policies in 100 namespaces (per
// namespace 10 RequestAuthentications, half without audiences, and 10 AuthorizationPolicies).
func auditCluster(b *testing.B) *policy.Snapshot {
	st := policy.NewSnapshot()
	for n := range 100 {
		ns := fmt.Sprintf("team-%d", n)
		for i := range 10 {
			app := fmt.Sprintf("app-%d", i)
			audiences := `,"audiences":["` + app + `"]`
			if i%2 == 0 {
				audiences = ""
			}
			r := &policy.RequestAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app + "-jwt", UID: types.UID(ns + app)}}
			st.Add(withSpec(b, r, `{"selector":{"matchLabels":{"app":"`+app+`"}},"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys"`+audiences+`}]}`))
			ap := &policy.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app + "-require-jwt"}}
			st.Add(withSpec(b, ap, `{"selector":{"matchLabels":{"app":"`+app+`"}},"rules":[{"from":[{"source":{"requestPrincipals":["https://idp.example.com/*"]}}]}]}`))
		}
		for i := range 100 {
			st.Add(&policy.Workload{ObjectMeta: &metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("pod-%d", i), Labels: map[string]string{"app": fmt.Sprintf("app-%d", i%10)}}, Kind: policy.KindPod})
		}
	}
	return st
}

// BenchmarkDesired: a full audit pass's judging, every policy and workload of auditCluster.
func BenchmarkDesired(b *testing.B) {
	st := auditCluster(b)
	e := policy.NewEngine()
	b.ReportAllocs()
	for b.Loop() {
		if reports := Desired(e, st, st.NamespaceNames()); len(reports) < 500 {
			b.Fatal(len(reports))
		}
	}
}

// BenchmarkDesiredNamespace: an incremental pass's judging, the namespace of one change.
func BenchmarkDesiredNamespace(b *testing.B) {
	st := auditCluster(b)
	e := policy.NewEngine()
	b.ReportAllocs()
	for b.Loop() {
		if reports := Desired(e, st, []string{"team-42"}); len(reports) < 5 {
			b.Fatal(len(reports))
		}
	}
}
