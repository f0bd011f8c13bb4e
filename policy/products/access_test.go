package products

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/mesh/meshtest"
)

// TestAccessTo: what a request needs to reach a workload from each entry point, as the
// proxies on its route judge it.
func TestAccessTo(t *testing.T) {
	const idp = "https://idp.example.com"
	web := meshtest.Pod("shop", "web-1", map[string]string{"app": "web"})
	gateway := &mesh.Workload{ObjectMeta: &metav1.ObjectMeta{Namespace: "istio-system", Name: "istio-ingressgateway", Labels: map[string]string{"istio": "ingressgateway"}}, Kind: mesh.KindPod}
	ra := func(ns, selector string, forward bool) *mesh.RequestAuthentication {
		return meshtest.RA(t, ns, "jwt-"+selector, fmt.Sprintf(`{"selector":{"matchLabels":{%s}},"jwtRules":[{"issuer":%q,"jwksUri":"https://idp.example.com/keys","audiences":["web"],"forwardOriginalToken":%t}]}`, selector, idp, forward))
	}
	webRA := func(forward bool) *mesh.RequestAuthentication { return ra("shop", `"app":"web"`, forward) }
	requireToken := meshtest.AP(t, "shop", "require-jwt", `{"selector":{"matchLabels":{"app":"web"}},"rules":[{"from":[{"source":{"requestPrincipals":["*"]}}]}]}`)
	denyTokenless := meshtest.AP(t, "shop", "deny-tokenless", `{"selector":{"matchLabels":{"app":"web"}},"action":"DENY","rules":[{"from":[{"source":{"notRequestPrincipals":["*"]}}],"to":[{"operation":{"notPaths":["/healthz"]}}]}]}`)
	curlOnly := meshtest.AP(t, "shop", "curl-only", `{"selector":{"matchLabels":{"app":"web"}},"rules":[{"from":[{"source":{"principals":["cluster.local/ns/shop/sa/curl"]}}]}]}`)
	strict := meshtest.PA(t, "shop", "default", `{"mtls":{"mode":"STRICT"}}`)
	gatewayRA := ra("istio-system", `"istio":"ingressgateway"`, true)
	gatewayRequire := meshtest.AP(t, "istio-system", "require-jwt", `{"selector":{"matchLabels":{"istio":"ingressgateway"}},"rules":[{"from":[{"source":{"requestPrincipals":["*"]}}]}]}`)
	for _, c := range []struct {
		name  string
		state []metav1.Object
		want  string // each entry as from=needs[detail]
	}{
		{"no policy", nil, "outside the mesh=nothing; mesh workloads=nothing"},
		{"a token required", []metav1.Object{webRA(false), requireToken}, "outside the mesh=token[https://idp.example.com]; mesh workloads=token[https://idp.example.com]"},
		{"mTLS STRICT", []metav1.Object{webRA(false), requireToken, strict}, "outside the mesh=refused; mesh workloads=token[https://idp.example.com]"},
		{"a health check exempt", []metav1.Object{webRA(false), denyTokenless}, "outside the mesh=token[https://idp.example.com] except [/healthz]; mesh workloads=token[https://idp.example.com] except [/healthz]"},
		{"one caller by identity", []metav1.Object{curlOnly, strict}, "outside the mesh=refused; mesh workloads=identity[cluster.local/ns/shop/sa/curl]"},
		{"a gateway that forwards the token", []metav1.Object{gateway, gatewayRA, gatewayRequire, webRA(false), requireToken},
			"outside the mesh=token[https://idp.example.com]; mesh workloads=token[https://idp.example.com]; ingress istio-system/istio-ingressgateway=token[https://idp.example.com]"},
		// The gateway's jwt_authn strips a token it validated unless told to forward it:
		// the sidecar behind it sees none.
		{"a gateway that strips the token", []metav1.Object{gateway, ra("istio-system", `"istio":"ingressgateway"`, false), gatewayRequire, webRA(false), requireToken},
			"outside the mesh=token[https://idp.example.com]; mesh workloads=token[https://idp.example.com]; ingress istio-system/istio-ingressgateway=refused"},
	} {
		st := meshtest.Snapshot(append(c.state, web)...)
		var got []string
		for _, a := range AccessTo(st, mesh.DefaultRootNamespace, web, IngressGateways(st, "")) {
			s := a.From + "=" + a.Needs
			switch {
			case len(a.Issuers) > 0:
				s += fmt.Sprintf("%v", a.Issuers)
			case len(a.Identities) > 0:
				s += fmt.Sprintf("%v", a.Identities)
			}
			if len(a.Exempt) > 0 {
				s += fmt.Sprintf(" except %v", a.Exempt)
			}
			got = append(got, s)
		}
		if g := strings.Join(got, "; "); g != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, g, c.want)
		}
	}
}
