package dataplane

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/mesh/meshtest"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// TestEvaluator: policies × a request → admitted or not, as Envoy's RBAC filters decide,
// with Istio's documented precedence (CUSTOM, then DENY, then ALLOW; no ALLOW policy
// admits) and matching (rules ORed, fields of one rule ANDed, list entries ORed).
func TestEvaluator(t *testing.T) {
	const (
		token   = "request.auth.principal=https://idp.example.com/alice"
		partner = "request.auth.principal=https://partner.example.org/bob"
	)
	cases := []struct {
		name     string
		policies []string // specs; a leading "dry-run " switches the policy to dry run
		Request  string   // attr=value pairs, space-separated
		admitted bool
	}{
		{"no policy admits", nil, "request.path=/x", true},
		{"an ALLOW policy without rules admits nothing", []string{`{"action":"ALLOW"}`}, "request.path=/x", false},
		{"an empty ALLOW rule admits everything", []string{`{"rules":[{}]}`}, "request.path=/x", true},
		{"a DENY policy without rules denies nothing", []string{`{"action":"DENY"}`}, "request.path=/x", true},
		{"DENY before ALLOW", []string{`{"rules":[{"to":[{"operation":{"paths":["/x"]}}]}]}`, `{"action":"DENY","rules":[{"to":[{"operation":{"paths":["/x"]}}]}]}`}, "request.path=/x", false},
		{"a DENY on GET lets POST through", []string{`{"action":"DENY","rules":[{"to":[{"operation":{"methods":["GET"]}}]}]}`}, "request.method=POST", true},
		{"a DENY on GET", []string{`{"action":"DENY","rules":[{"to":[{"operation":{"methods":["GET"]}}]}]}`}, "request.method=GET", false},
		{"ALLOW a token: none", []string{`{"rules":[{"from":[{"source":{"requestPrincipals":["*"]}}]}]}`}, "", false},
		{"ALLOW a token: one", []string{`{"rules":[{"from":[{"source":{"requestPrincipals":["*"]}}]}]}`}, token, true},
		{"DENY no token: none", []string{`{"action":"DENY","rules":[{"from":[{"source":{"notRequestPrincipals":["*"]}}]}]}`}, "", false},
		{"DENY no token: one", []string{`{"action":"DENY","rules":[{"from":[{"source":{"notRequestPrincipals":["*"]}}]}]}`}, token, true},
		{"a source's fields ANDed: no token", []string{`{"rules":[{"from":[{"source":{"requestPrincipals":["*"],"notRequestPrincipals":["https://partner.example.org/*"]}}]}]}`}, "", false},
		{"a source's fields ANDed: the partner", []string{`{"rules":[{"from":[{"source":{"requestPrincipals":["*"],"notRequestPrincipals":["https://partner.example.org/*"]}}]}]}`}, partner, false},
		{"a source's fields ANDed: another token", []string{`{"rules":[{"from":[{"source":{"requestPrincipals":["*"],"notRequestPrincipals":["https://partner.example.org/*"]}}]}]}`}, token, true},
		{"any rule of any ALLOW policy", []string{`{"rules":[{"from":[{"source":{"requestPrincipals":["*"]}}]}]}`, `{"rules":[{"to":[{"operation":{"methods":["GET"]}}]}]}`}, "request.method=GET", true},
		{"from entries ORed", []string{`{"rules":[{"from":[{"source":{"namespaces":["a"]}},{"source":{"namespaces":["b"]}}]}]}`}, "source.namespace=b", true},
		{"from entries ORed: neither", []string{`{"rules":[{"from":[{"source":{"namespaces":["a"]}},{"source":{"namespaces":["b"]}}]}]}`}, "source.namespace=c", false},
		{"from, to and when ANDed", []string{`{"rules":[{"from":[{"source":{"namespaces":["a"]}}],"to":[{"operation":{"methods":["GET"]}}]}]}`}, "source.namespace=a request.method=POST", false},
		{"notPaths", []string{`{"rules":[{"to":[{"operation":{"notPaths":["/admin"]}}]}]}`}, "request.path=/admin", false},
		{"notPaths: another path", []string{`{"rules":[{"to":[{"operation":{"notPaths":["/admin"]}}]}]}`}, "request.path=/x", true},
		{"prefix", []string{`{"rules":[{"to":[{"operation":{"paths":["/api/*"]}}]}]}`}, "request.path=/api/v1", true},
		{"prefix: not inside", []string{`{"rules":[{"to":[{"operation":{"paths":["/api/*"]}}]}]}`}, "request.path=/apix", false},
		{"suffix", []string{`{"rules":[{"to":[{"operation":{"hosts":["*.example.com"]}}]}]}`}, "request.host=shop.example.com", true},
		{"a header present", []string{`{"rules":[{"when":[{"key":"request.headers[x-user]","values":["*"]}]}]}`}, "request.headers[x-user]=anything", true},
		{"a header absent matches no value", []string{`{"rules":[{"when":[{"key":"request.headers[x-user]","values":["*"]}]}]}`}, "", false},
		{"a header absent matches every notValue", []string{`{"rules":[{"when":[{"key":"request.headers[x-user]","notValues":["admin"]}]}]}`}, "", true},
		{"a rule with an unknown when key is skipped", []string{`{"rules":[{"when":[{"key":"request.user","values":["*"]}]}]}`}, "", false},
		{"a DENY rule with an unknown when key is skipped too", []string{`{"action":"DENY","rules":[{"when":[{"key":"request.user","values":["*"]}]}]}`}, "", true},
		{"a dry-run ALLOW enforces nothing", []string{`dry-run {"rules":[{"from":[{"source":{"requestPrincipals":["*"]}}]}]}`}, "", true},
		{"a dry-run DENY enforces nothing", []string{`dry-run {"action":"DENY","rules":[{}]}`}, "", true},
		{"CUSTOM is left to its provider", []string{`{"action":"CUSTOM","provider":{"name":"ext-authz"},"rules":[{}]}`}, "", true},
		{"AUDIT decides nothing", []string{`{"action":"AUDIT","rules":[{}]}`}, "", true},
		{"IP ranges", []string{`{"rules":[{"from":[{"source":{"ipBlocks":["10.0.0.0/8"]}}]}]}`}, "source.ip=10.0.0.0/8", true},
		{"IP ranges: everything", []string{`{"rules":[{"from":[{"source":{"ipBlocks":["0.0.0.0/0"]}}]}]}`}, "source.ip=192.0.2.1", true},
	}
	for _, c := range cases {
		var aps []*mesh.AuthorizationPolicy
		for _, spec := range c.policies {
			spec, dry := strings.CutPrefix(spec, "dry-run ")
			ap := meshtest.AP(t, "shop", "p", spec)
			if dry {
				ap.Annotations = map[string]string{DryRunAnnotation: "true"}
			}
			aps = append(aps, ap)
		}
		req := meshtest.Attributes(c.Request)
		if got := EnforcementOf(aps, true).Admits(req); got != c.admitted {
			t.Errorf("%s: admitted %v, want %v", c.name, got, c.admitted)
		}
	}
}

// TestTokenlessOpening: whether some request with no token gets in, on a path and from a
// caller no policy names; and the request that does.
func TestTokenlessOpening(t *testing.T) {
	const requireToken = `{"rules":[{"from":[{"source":{"requestPrincipals":["*"]}}]}]}`
	// when conditions on headers: n of one value each, or one of n values.
	headers := func(n int, oneHeader bool) string {
		var when []string
		for i := range n {
			if oneHeader {
				when = append(when, fmt.Sprintf(`"v%d"`, i))
				continue
			}
			when = append(when, fmt.Sprintf(`{"key":"request.headers[x-h%d]","values":["v"]}`, i))
		}
		if oneHeader {
			return `{"key":"request.headers[x-h]","values":[` + strings.Join(when, ",") + `]}`
		}
		return strings.Join(when, ",")
	}
	undecided := fmt.Sprintf("a request with no token that meshguard cannot rule out: the policies name more than %d combinations of values to try (shorten or split their lists)", MaxRequestClasses)
	cases := []struct {
		name      string
		policies  []string
		plaintext bool
		open      string // "" closed; else what DescribeRequest says of the request found
	}{
		{"no policy", nil, true, "a request with no token, from a caller without mTLS"},
		{"a token required", []string{requireToken}, true, ""},
		{"a catch-all rule beside it", []string{`{"rules":[{"from":[{"source":{"requestPrincipals":["*"]}}]},{"to":[{"operation":{"paths":["/*"]}}]}]}`}, true, "a request with no token, from a caller without mTLS"},
		{"a second ALLOW on GET", []string{requireToken, `{"rules":[{"to":[{"operation":{"methods":["GET"]}}]}]}`}, false, "a request with no token, from any workload of the mesh, method GET"},
		{"named paths only", []string{requireToken, `{"rules":[{"to":[{"operation":{"paths":["/healthz","/public/*"]}}]}]}`}, true, ""},
		{"one namespace over STRICT mTLS", []string{requireToken, `{"rules":[{"from":[{"source":{"namespaces":["shop"]}}]}]}`}, false, ""},
		{"any mesh workload", []string{requireToken, `{"rules":[{"from":[{"source":{"namespaces":["*"]}}]}]}`}, false, "a request with no token, from any workload of the mesh"},
		// Patterns that name no namespace in particular admit any tenant's workloads (the
		// tenant audit's F6); those pinned to one namespace are named callers.
		{"principals cluster.local/*", []string{requireToken, `{"rules":[{"from":[{"source":{"principals":["cluster.local/*"]}}]}]}`}, false, "a request with no token, from any workload whose identity matches cluster.local/*"},
		{"namespaces tenant-*", []string{requireToken, `{"rules":[{"from":[{"source":{"namespaces":["tenant-*"]}}]}]}`}, false, "a request with no token, from any workload of a namespace matching tenant-*"},
		{"principals of one namespace", []string{requireToken, `{"rules":[{"from":[{"source":{"principals":["cluster.local/ns/shop/*","*/ns/shop/sa/web"]}}]}]}`}, false, ""},
		{"principals cluster.local/ns/shop* (shop-evil too)", []string{requireToken, `{"rules":[{"from":[{"source":{"principals":["cluster.local/ns/shop*"]}}]}]}`}, false, "a request with no token, from any workload whose identity matches cluster.local/ns/shop*"},
		{"a DENY everywhere", []string{`{"action":"DENY","rules":[{"from":[{"source":{"notRequestPrincipals":["*"]}}]}]}`}, true, ""},
		{"a DENY on one path", []string{`{"action":"DENY","rules":[{"from":[{"source":{"notRequestPrincipals":["*"]}}],"to":[{"operation":{"paths":["/admin"]}}]}]}`}, true, "a request with no token, from a caller without mTLS"},
		// Past what the engine tries, a request is assumed to get in (fail closed); values
		// every condition treats alike are one, however many a list names.
		{"a DENY on 13 headers at once", []string{requireToken, `{"action":"DENY","rules":[{"when":[` + headers(13, false) + `]}]}`}, false, undecided},
		{"a DENY on one header of 1,000 values", []string{requireToken, `{"action":"DENY","rules":[{"when":[` + headers(1000, true) + `]}]}`}, false, ""},
		{"an ALLOW on GET beside it", []string{requireToken, `{"action":"DENY","rules":[{"when":[` + headers(1000, true) + `]}]}`, `{"rules":[{"to":[{"operation":{"methods":["GET"]}}]}]}`}, false, "a request with no token, from any workload of the mesh, method GET"},
		{"a DENY but on GET, an ALLOW on GET only", []string{`{"action":"DENY","rules":[{"from":[{"source":{"notRequestPrincipals":["*"]}}],"to":[{"operation":{"methods":["GET"]}}]}]}`, `{"rules":[{"to":[{"operation":{"methods":["GET"]}}]}]}`}, true, ""},
	}
	for _, c := range cases {
		var aps []*mesh.AuthorizationPolicy
		for _, spec := range c.policies {
			aps = append(aps, meshtest.AP(t, "shop", "p", spec))
		}
		witness := EnforcementOf(aps, c.plaintext).TokenlessOpening()
		got := ""
		if witness != nil {
			got = DescribeRequest(witness)
		}
		if got != c.open {
			t.Errorf("%s: found %q, want %q", c.name, got, c.open)
		}
	}
}

// TestEnforcementPoints: the same policies and request, at a sidecar (as Envoy evaluates
// them) and at ztunnel (as istiod's handleRule translates them for it, in
// pilot/pkg/serviceregistry/ambient/authorization.go).
func TestEnforcementPoints(t *testing.T) {
	cases := []struct {
		name             string
		policies         []string
		Request          string
		sidecar, ztunnel bool
	}{
		{"an L4 ALLOW", []string{`{"selector":{"matchLabels":{"app":"web"}},"rules":[{"from":[{"source":{"namespaces":["shop"]}}]}]}`},
			"source.namespace=shop", true, true},
		{"an L4 ALLOW, another namespace", []string{`{"selector":{"matchLabels":{"app":"web"}},"rules":[{"from":[{"source":{"namespaces":["shop"]}}]}]}`},
			"source.namespace=other", false, false},
		{"an ALLOW rule with a path: dropped at ztunnel, which then admits nothing", []string{`{"selector":{"matchLabels":{"app":"web"}},"rules":[{"to":[{"operation":{"paths":["/api/*"]}}]}]}`},
			"request.path=/api/v1", true, false},
		{"the recommended DENY of token-less requests: a no-op at ztunnel", []string{`{"selector":{"matchLabels":{"app":"web"}},"action":"DENY","rules":[{"from":[{"source":{"notRequestPrincipals":["*"]}}]}]}`},
			"", false, true},
		{"a DENY on a port and a path: the whole port at ztunnel", []string{`{"selector":{"matchLabels":{"app":"web"}},"action":"DENY","rules":[{"to":[{"operation":{"ports":["8080"],"paths":["/admin"]}}]}]}`},
			"destination.port=8080 request.path=/public", true, false},
		{"a DENY with a claim condition: a no-op at ztunnel, its L4 part too", []string{`{"selector":{"matchLabels":{"app":"web"}},"action":"DENY","rules":[{"from":[{"source":{"namespaces":["partner"]}}],"when":[{"key":"request.auth.claims[roles]","values":["guest"]}]}]}`},
			"source.namespace=partner request.auth.claims[roles]=guest", false, true},
		{"CUSTOM: left to its provider at a sidecar, never sent to ztunnel", []string{`{"selector":{"matchLabels":{"app":"web"}},"action":"CUSTOM","provider":{"name":"ext-authz"},"rules":[{}]}`},
			"", true, true},
		{"a policy attached to a waypoint: not ztunnel's", []string{`{"targetRefs":[{"kind":"Service","group":"","name":"web"}],"action":"DENY","rules":[{"from":[{"source":{"namespaces":["untrusted"]}}]}]}`},
			"source.namespace=untrusted", false, true},
	}
	for _, c := range cases {
		var aps []*mesh.AuthorizationPolicy
		for _, spec := range c.policies {
			aps = append(aps, meshtest.AP(t, "shop", "p", spec))
		}
		req := meshtest.Attributes(c.Request)
		// A waypoint's policy reaches no sidecar either; the sidecar column is Envoy's
		// evaluation of the rules as written.
		if got := EnforcementOf(aps, true).Admits(req); got != c.sidecar && len(mesh.ScopeOf(aps[0]).TargetRefs) == 0 {
			t.Errorf("%s, at a sidecar: admitted %v, want %v", c.name, got, c.sidecar)
		}
		if got := ZtunnelEnforcement(aps, true).Admits(req); got != c.ztunnel {
			t.Errorf("%s, at ztunnel: admitted %v, want %v", c.name, got, c.ztunnel)
		}
	}
}

// TestValueMatches: values are matched as Envoy matches what istiod generates for them.
func TestValueMatches(t *testing.T) {
	for _, c := range []struct {
		attr, value, pattern string
		want                 bool
	}{
		{rulefields.Path, "/admin?x=1", "/admin", true}, // url_path drops the query
		{rulefields.Path, "/admin#top", "/admin", true}, // and the fragment
		{rulefields.Path, "/items/42", "/items/{*}", true},
		{rulefields.Path, "/items/42/x", "/items/{*}", false},
		{rulefields.Path, "/items/", "/items/{*}", false},
		{rulefields.Path, "/items/42/x", "/items/{**}", true},
		{rulefields.Path, "/items", "/items/{**}", false},
		{rulefields.Path, "/a/b/c", "/a/{*}/c", true},
		{rulefields.Host, "Web.Example.com", "web.example.com", true}, // :authority, ignore_case
		{rulefields.Host, "WEB.example.com", "*.example.com", true},
		{rulefields.Host, "web.example.com:8080", "web.example.com", false},
		{rulefields.SourceIP, "203.0.113.9", "203.0.113.0/24", true},
		{rulefields.SourceIP, "203.0.114.9", "203.0.113.0/24", false},
		{rulefields.SourceIP, "203.0.113.9", "203.0.113.9", true},
		{rulefields.RemoteIP, "2001:db8::1", "2001:db8::/32", true},
		{rulefields.Method, "get", "GET", false}, // methods are matched as written
	} {
		if got := ValueMatches(c.attr, c.value, c.pattern); got != c.want {
			t.Errorf("%s %q against %q: %v", c.attr, c.value, c.pattern, got)
		}
	}
}

// TestRoutes: per workload, per route a request takes (direct, through the waypoint, in
// through an ingress gateway) and per request class, whether it gets through every proxy
// on the way. The mesh: namespace shop in ambient mode, its Service web bound to waypoint
// shop/waypoint, which checks tokens, and ztunnel admitting only the waypoint (the form
// Istio's ambient security guide recommends); namespace legacy with sidecars checking
// tokens; an ingress gateway ingress/public routing to both.
func TestRoutes(t *testing.T) {
	const (
		token       = "request.auth.principal=https://idp.example.com/alice"
		frontend    = "source.principal=cluster.local/ns/shop/sa/frontend source.namespace=shop"
		requireJWT  = `{"rules":[{"from":[{"source":{"requestPrincipals":["*"]}}]}]}`
		jwtRule     = `{"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys"}]}`
		forwardRule = `{"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys","forwardOriginalToken":true}]}`
	)
	atService := func(spec string) string {
		return `{"targetRefs":[{"kind":"Service","group":"","name":"web"}],` + spec[1:]
	}
	atSelector := func(app, spec string) string {
		return `{"selector":{"matchLabels":{"app":"` + app + `"}},` + spec[1:]
	}
	meshOf := func(ingressRA string, shopLabels map[string]string) mesh.State {
		shop := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{mesh.DataplaneModeLabel: "ambient", mesh.UseWaypointLabel: "waypoint"}}}
		for k, v := range shopLabels {
			shop.Labels[k] = v
		}
		legacy := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "legacy", Labels: map[string]string{mesh.InjectionLabel: "enabled"}}}
		wp := &mesh.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "waypoint", Namespace: "shop"}}
		wp.Spec.GatewayClassName = mesh.WaypointClass
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}}}
		objs := []metav1.Object{shop, legacy, wp, svc,
			meshtest.Pod("shop", "web", map[string]string{"app": "web"}),
			meshtest.Pod("legacy", "api", map[string]string{"app": "api"}),
			meshtest.RA(t, "shop", "web-jwt", atService(jwtRule)),
			meshtest.AP(t, "shop", "web-require-jwt", atService(requireJWT)),
			meshtest.AP(t, "shop", "web-only-waypoint", atSelector("web", `{"rules":[{"from":[{"source":{"principals":["cluster.local/ns/shop/sa/waypoint"]}}]}]}`)),
			meshtest.RA(t, "legacy", "api-jwt", atSelector("api", jwtRule)),
			meshtest.AP(t, "legacy", "api-require-jwt", atSelector("api", requireJWT)),
		}
		if ingressRA != "" {
			objs = append(objs, meshtest.RA(t, "ingress", "public-jwt", `{"targetRefs":[{"kind":"Gateway","group":"gateway.networking.k8s.io","name":"public"}],`+ingressRA[1:]))
		}
		return meshtest.Snapshot(objs...)
	}
	ingress := meshtest.Pod("ingress", "public-7d9f", map[string]string{mesh.GatewayNameLabel: "public"})
	cases := []struct {
		name       string
		ingressRA  string
		shopLabels map[string]string
		workload   string // namespace/name
		via        string
		request    string
		admitted   bool
	}{
		{"ambient, direct: ztunnel admits the waypoint only", "", nil, "shop/web", "direct", token + " " + frontend, false},
		{"ambient, through the waypoint, with a token", "", nil, "shop/web", "waypoint shop/waypoint", token + " " + frontend, true},
		{"ambient, through the waypoint, no token", "", nil, "shop/web", "waypoint shop/waypoint", frontend, false},
		{"ambient, from the ingress: past the waypoint, and ztunnel turns the gateway away", "", nil, "shop/web", "ingress ingress/public", token, false},
		{"ambient, from the ingress through the waypoint (ingress-use-waypoint)", "", map[string]string{mesh.IngressUseWaypointLabel: "true"}, "shop/web", "ingress ingress/public", token, true},
		{"ambient, from the ingress through the waypoint, no token", "", map[string]string{mesh.IngressUseWaypointLabel: "true"}, "shop/web", "ingress ingress/public", "", false},
		{"ambient, the gateway validates the token and drops it: the waypoint sees none", jwtRule, map[string]string{mesh.IngressUseWaypointLabel: "true"}, "shop/web", "ingress ingress/public", token, false},
		{"ambient, the gateway forwards the token it validated", forwardRule, map[string]string{mesh.IngressUseWaypointLabel: "true"}, "shop/web", "ingress ingress/public", token, true},
		{"sidecar, direct, with a token", "", nil, "legacy/api", "direct", token + " " + frontend, true},
		{"sidecar, direct, no token", "", nil, "legacy/api", "direct", frontend, false},
		{"sidecar, direct, no token, no mTLS", "", nil, "legacy/api", "direct", "", false},
		{"sidecar, from the ingress, with a token", "", nil, "legacy/api", "ingress ingress/public", token, true},
		{"sidecar, from the ingress that drops the token", jwtRule, nil, "legacy/api", "ingress ingress/public", token, false},
	}
	for _, c := range cases {
		st := meshOf(c.ingressRA, c.shopLabels)
		ns, name, _ := strings.Cut(c.workload, "/")
		w := st.Workloads(ns, nil)[0]
		if w.Name != name {
			t.Fatalf("%s: workload %s/%s not found", c.name, ns, name)
		}
		routes := RoutesTo(st, "istio-system", w, []*mesh.Workload{ingress})
		i := slices.IndexFunc(routes, func(r Route) bool { return r.Via == c.via })
		if i < 0 {
			t.Errorf("%s: no route %q", c.name, c.via)
			continue
		}
		if got := routes[i].Admits(meshtest.Attributes(c.request)); got != c.admitted {
			t.Errorf("%s: admitted %v, want %v", c.name, got, c.admitted)
		}
	}
}
