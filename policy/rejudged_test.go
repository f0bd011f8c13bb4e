package policy_test

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/check"
	"github.com/meshguard/meshguard/policy"
)

// waypointedService is a Service of an ambient namespace whose tokens its waypoint checks,
// where ztunnel admits only the waypoint, and an ingress gateway that routes to it through
// the waypoint.
const waypointedService = `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop, labels: {istio.io/waypoint-for: service}}
spec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ingress, namespace: shop}
spec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, labels: {istio.io/use-waypoint: waypoint, istio.io/ingress-use-waypoint: "true"}}
spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec: {containers: [{name: web, image: web:1}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-waypoint, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/waypoint"]}}]}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: web-jwt, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: web}]
  jwtRules: [{issuer: "https://idp.example.com", jwksUri: "https://idp.example.com/keys", audiences: [web]}]
`

const ingressRoute = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{name: ingress}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
`

// TestRejudgedOnChanges: MG808 and MG809, rules of RequestAuthentications, also judge the
// later changes that open what they guard against: the DELETE of the policy that admits
// only the waypoint at ztunnel, an ingress route created, the ingress-use-waypoint label
// removed.
func TestRejudgedOnChanges(t *testing.T) {
	engine := policy.NewEngine()
	loader := check.Loader{Namespace: "default", Engine: engine}
	find := func(b *check.Bundle, kind, name string) metav1.Object {
		t.Helper()
		o := b.State.Find(kind, "shop", name)
		if o == nil {
			t.Fatalf("no %s %s", kind, name)
		}
		return o
	}
	live := load(t, loader, []byte(waypointedService))
	routed := load(t, loader, []byte(waypointedService+"---\n"+ingressRoute))
	route := find(load(t, loader, []byte(ingressRoute)), policy.KindHTTPRoute, "web")
	svc := find(routed, policy.KindService, "web")
	unlabelledYAML := strings.Replace(waypointedService, `, istio.io/ingress-use-waypoint: "true"`, "", 1)
	unlabelled := load(t, loader, []byte(unlabelledYAML))
	relabelled := find(load(t, loader, []byte(unlabelledYAML)), policy.KindService, "web")
	for _, c := range []struct {
		name     string
		review   policy.Review
		rule     string
		wantHits bool
	}{
		{"the policy admitting only the waypoint deleted", policy.Review{Operation: policy.Delete, Object: find(live, policy.KindAuthorizationPolicy, "only-waypoint"), State: live.State}, "MG808", true},
		{"an ingress route created, the Service through its waypoint", policy.Review{Operation: policy.Create, Object: route, State: live.State}, "MG809", false},
		{"an ingress route created, the Service not through its waypoint", policy.Review{Operation: policy.Create, Object: route, State: unlabelled.State}, "MG809", true},
		{"the ingress-use-waypoint label removed", policy.Review{Operation: policy.Update, Object: relabelled, OldObject: svc, State: routed.State}, "MG809", true},
	} {
		found := false
		for _, f := range engine.Review(c.review) {
			found = found || f.Rule == c.rule
		}
		if found != c.wantHits {
			t.Errorf("%s: %s found %v", c.name, c.rule, found)
		}
	}
}
