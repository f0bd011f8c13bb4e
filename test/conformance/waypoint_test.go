package conformance

import (
	"math/rand/v2"
	"slices"
	"testing"

	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/policy/products"
)

// TestWaypointConformance: policies attached to an ambient workload's Service by
// targetRefs (or to another Service) are enforced by its waypoint; for policy sets drawn
// from a seed and every request from a caller with mTLS, meshguard's verdict on the route
// through the waypoint is the one Envoy gives under the RBAC istiod builds for the
// waypoint's chain of that Service. Rules name no addresses or ports: the waypoint sees
// ztunnel's, not the caller's.
func TestWaypointConformance(t *testing.T) {
	cases, divergences, skipped := 0, 0, 0
	for s := range uint64(*seeds) {
		r := rand.New(rand.NewPCG(*seed0+s, 2))
		policies := generate(r, func(p *namedPolicy) {
			p.namespace = "shop"
			p.spec.TargetRefs = []*typev1beta1.PolicyTargetReference{{Kind: "Service", Group: "", Name: pick(r, []string{"web", "web", "web", "api"})}}
		})
		for _, p := range policies {
			for _, rule := range p.spec.Rules {
				withoutAddressesOrPorts(rule)
			}
		}
		verifies := r.IntN(4) != 0
		if !allValid(policies) {
			skipped++
			continue
		}
		filters, err := waypointRBAC(policies, "shop", "waypoint", "web")
		if err != nil {
			t.Fatalf("seed %d: istiod's translation: %v", *seed0+s, err)
		}
		st, w := ambientState(policies, verifies)
		c := httpCase{*seed0 + s, filters, st, w, products.ViaWaypoint, verifies, policies}
		for _, req := range requests() {
			if req.principal == "" {
				continue // a waypoint takes HBONE only
			}
			cases++
			c.judge(t, req, &divergences)
		}
	}
	tally.cases, tally.divergences, tally.refused = tally.cases+cases, tally.divergences+divergences, tally.refused+skipped
}

// withoutAddressesOrPorts drops from a rule the fields on addresses and ports, and the
// entries they leave empty.
func withoutAddressesOrPorts(rule *securityv1beta1.Rule) {
	for _, f := range rule.From {
		f.Source.IpBlocks, f.Source.NotIpBlocks = nil, nil
	}
	for _, to := range rule.To {
		to.Operation.Ports, to.Operation.NotPorts = nil, nil
	}
	rule.From = slices.DeleteFunc(rule.From, func(f *securityv1beta1.Rule_From) bool {
		s := f.Source
		return len(s.Principals)+len(s.NotPrincipals)+len(s.Namespaces)+len(s.NotNamespaces)+len(s.ServiceAccounts)+len(s.NotServiceAccounts)+
			len(s.RequestPrincipals)+len(s.NotRequestPrincipals) == 0
	})
	rule.To = slices.DeleteFunc(rule.To, func(to *securityv1beta1.Rule_To) bool {
		o := to.Operation
		return len(o.Paths)+len(o.NotPaths)+len(o.Methods)+len(o.NotMethods)+len(o.Hosts)+len(o.NotHosts) == 0
	})
	rule.When = slices.DeleteFunc(rule.When, func(c *securityv1beta1.Condition) bool { return c.Key == "destination.port" })
}

// ambientState is an ambient namespace whose Service web, of the workload's Pod, is bound
// to its waypoint, with the policies, and a RequestAuthentication attached to the Service
// where it verifies tokens.
func ambientState(policies []namedPolicy, verifies bool) (*policy.Snapshot, *policy.Workload) {
	st := policy.NewSnapshot()
	st.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{policy.DataplaneModeLabel: "ambient", "istio.io/use-waypoint": "waypoint"}}})
	st.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: rootNamespace}})
	gw := &policy.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "waypoint", Namespace: "shop"}}
	gw.Spec.GatewayClassName = "istio-waypoint"
	gw.Spec.Listeners = []gatewayv1.Listener{{Name: "mesh", Port: 15008, Protocol: "HBONE"}}
	st.Add(gw)
	st.Add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.ServiceSpec{Selector: workload, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}})
	w := &policy.Workload{Kind: policy.KindPod, ObjectMeta: &metav1.ObjectMeta{Name: "web-0", Namespace: "shop", Labels: workload}}
	st.Add(w)
	if verifies {
		ra := &policy.RequestAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "web-jwt", Namespace: "shop"}}
		ra.Spec.TargetRefs = []*typev1beta1.PolicyTargetReference{{Kind: "Service", Group: "", Name: "web"}}
		ra.Spec.JwtRules = []*securityv1beta1.JWTRule{{Issuer: issuer, JwksUri: issuer + "/keys", Audiences: []string{"web"}}}
		st.Add(ra)
	}
	addPolicies(st, policies)
	return st, w
}
