package audit

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshguard/meshguard/policy"
)

// BenchmarkDesired: a full audit pass's judging, over 10,000 Pods and 2,000 policies in
// 100 namespaces (per namespace 10 RequestAuthentications and 10 AuthorizationPolicies, half
// of the RequestAuthentications without audiences).
func BenchmarkDesired(b *testing.B) {
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
	e := policy.NewEngine()
	b.ReportAllocs()
	for b.Loop() {
		if reports := Desired(e, st); len(reports) < 500 {
			b.Fatal(len(reports))
		}
	}
}
