package dataplane

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// newAP is an AuthorizationPolicy of namespace shop with the spec js (proto JSON).
func newAP(t *testing.T, js string) *mesh.AuthorizationPolicy {
	t.Helper()
	ap := &mesh.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p"}}
	if err := protojson.Unmarshal([]byte(js), &ap.Spec); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return ap
}

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
			ap := newAP(t, spec)
			if dry {
				ap.Annotations = map[string]string{DryRunAnnotation: "true"}
			}
			aps = append(aps, ap)
		}
		req := parseRequest(c.Request)
		if got := EnforcementOf(aps, true).Admits(req); got != c.admitted {
			t.Errorf("%s: admitted %v, want %v", c.name, got, c.admitted)
		}
	}
}

// parseRequest reads a request class written as attr=value pairs, space-separated.
func parseRequest(s string) Request {
	req := Request{}
	for _, kv := range strings.Fields(s) {
		k, v, _ := strings.Cut(kv, "=")
		req[k] = v
	}
	return req
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
			aps = append(aps, newAP(t, spec))
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
			aps = append(aps, newAP(t, spec))
		}
		req := parseRequest(c.Request)
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
