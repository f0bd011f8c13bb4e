package conformance

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/policy/products"
)

// TestZtunnelConformance: for policy sets drawn from a seed as for sidecars, every
// connection to an ambient workload without a waypoint (callers with mTLS of several
// namespaces, and without, from addresses inside and outside the ranges, to several
// ports) is refused by meshguard exactly where ztunnel refuses it under the Authorizations
// istiod's ambient index sends it, HTTP fields dropped or widened as istiod converts them.
func TestZtunnelConformance(t *testing.T) {
	cases, divergences, skipped := 0, 0, 0
	for s := range uint64(*seeds) {
		r := rand.New(rand.NewPCG(*seed0+s, 3))
		policies := generatePolicies(r)
		if !allValid(policies) {
			skipped++
			continue
		}
		var aps []*policy.AuthorizationPolicy
		for _, p := range policies {
			ap := &policy.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.namespace, Annotations: p.annotations}}
			proto.Merge(&ap.Spec, p.spec)
			aps = append(aps, ap)
		}
		authorizations := ztunnelPolicies(aps, "shop", workload)
		st := policy.NewSnapshot()
		st.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{policy.DataplaneModeLabel: "ambient"}}})
		for _, ns := range []string{"other", rootNamespace} {
			st.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		}
		w := &policy.Workload{Kind: policy.KindPod, ObjectMeta: &metav1.ObjectMeta{Name: "web-0", Namespace: "shop", Labels: workload}}
		st.Add(w)
		addPolicies(st, policies)
		for _, principal := range requestPrincipals {
			for _, ip := range requestIPs {
				for _, port := range requestPorts {
					cases++
					identity := ""
					if principal != "" {
						identity = "spiffe://" + principal
					}
					p, _ := strconv.Atoi(port)
					want := ztunnelAllows(authorizations, connection{identity: identity, source: ip, port: uint32(p)})
					e, err := products.Explain(st, rootNamespace, w, products.ViaDirect, products.Request{Method: "GET", Path: "/", Port: port, FromPrincipal: principal, FromIP: ip})
					if err != nil {
						t.Fatal(err)
					}
					if got := e.Verdict == policy.VerdictAllow; got != want {
						divergences++
						if divergences <= 10 {
							t.Errorf("seed %d: from %q at %s to port %s: ztunnel allows %v, meshguard says %s (decided by %s)\n%s", *seed0+s, principal, ip, port, want, e.Verdict, e.DecidedBy, reproduction(policies))
						}
					}
				}
			}
		}
	}
	tally.cases, tally.divergences, tally.refused = tally.cases+cases, tally.divergences+divergences, tally.refused+skipped
}
