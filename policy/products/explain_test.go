package products

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/mesh/meshtest"
)

// TestExplain: a request's verdict, the status its caller gets and what decided, through
// each proxy's token check and policies.
func TestExplain(t *testing.T) {
	const (
		jwt        = `{"selector":{"matchLabels":{"app":"web"}},"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys","audiences":["web"]}]}`
		requireJWT = `{"selector":{"matchLabels":{"app":"web"}},"rules":[{"from":[{"source":{"requestPrincipals":["https://idp.example.com/*"]}}]}]}`
		frontend   = "cluster.local/ns/shop/sa/frontend"
	)
	alice := &dataplane.Token{Claims: map[string][]string{"iss": {"https://idp.example.com"}, "sub": {"alice"}, "aud": {"web"}, "groups": {"dev", "admin"}}}
	otherAudience := &dataplane.Token{Claims: map[string][]string{"iss": {"https://idp.example.com"}, "sub": {"alice"}, "aud": {"billing"}}}
	otherIssuer := &dataplane.Token{Claims: map[string][]string{"iss": {"https://evil.example.com"}, "sub": {"mallory"}}}
	forged := &dataplane.Token{Invalid: true, Claims: alice.Claims}
	cases := []struct {
		name     string
		objects  []string // kind:spec, in namespace shop
		via      string
		req      Request
		verdict  dataplane.Verdict
		status   int // 0: none
		decided  string
		shadowed dataplane.Verdict
	}{
		{"no policy", nil, "", Request{Path: "/"}, dataplane.VerdictAllow, 200, "no policy denies it", ""},
		{"a valid token", []string{"ra:" + jwt, "ap:" + requireJWT}, "", Request{Path: "/", Token: alice}, dataplane.VerdictAllow, 200, "ns[shop]-policy[p1]-rule[0]", ""},
		{"no token", []string{"ra:" + jwt, "ap:" + requireJWT}, "", Request{Path: "/"}, dataplane.VerdictDeny, 403, "rbac_access_denied_matched_policy[none]", ""},
		{"no token, no ALLOW policy: the RequestAuthentication alone lets it in", []string{"ra:" + jwt}, "", Request{Path: "/"}, dataplane.VerdictAllow, 200, "no policy denies it", ""},
		{"another audience", []string{"ra:" + jwt, "ap:" + requireJWT}, "", Request{Path: "/", Token: otherAudience}, dataplane.VerdictUnauthenticated, 401, "Audiences in Jwt are not allowed", ""},
		{"another issuer", []string{"ra:" + jwt}, "", Request{Path: "/", Token: otherIssuer}, dataplane.VerdictUnauthenticated, 401, "Jwt issuer is not configured", ""},
		{"a forged token", []string{"ra:" + jwt}, "", Request{Path: "/", Token: forged}, dataplane.VerdictUnauthenticated, 401, "Jwt verification fails", ""},
		{"a token and no RequestAuthentication: not read", []string{"ap:" + requireJWT}, "", Request{Path: "/", Token: alice}, dataplane.VerdictDeny, 403, "rbac_access_denied_matched_policy[none]", ""},
		{"DENY on a claim", []string{"ra:" + jwt, `ap:{"selector":{"matchLabels":{"app":"web"}},"action":"DENY","rules":[{"when":[{"key":"request.auth.claims[groups]","values":["admin"]}]}]}`},
			"", Request{Path: "/", Token: alice}, dataplane.VerdictDeny, 403, "ns[shop]-policy[p1]-rule[0]", ""},
		{"DENY on a path, another path", []string{`ap:{"action":"DENY","rules":[{"to":[{"operation":{"paths":["/admin*"]}}]}]}`},
			"", Request{Path: "/api"}, dataplane.VerdictAllow, 200, "no policy denies it", ""},
		{"a dry-run DENY: enforced nothing, shadow denies", []string{`ap:{"action":"DENY","rules":[{"to":[{"operation":{"paths":["/admin*"]}}]}]}|dry-run`},
			"", Request{Path: "/admin/users"}, dataplane.VerdictAllow, 200, "no policy denies it", dataplane.VerdictDeny},
		{"CUSTOM: its provider decides", []string{`ap:{"action":"CUSTOM","provider":{"name":"opa"},"rules":[{}]}`},
			"", Request{Path: "/"}, dataplane.VerdictUndetermined, 0, "provider opa", ""},
		{"CUSTOM, and a DENY that matches: denied", []string{`ap:{"action":"CUSTOM","provider":{"name":"opa"},"rules":[{}]}`, `ap:{"action":"DENY","rules":[{}]}`},
			"", Request{Path: "/"}, dataplane.VerdictDeny, 403, "ns[shop]-policy[p1]-rule[0]", ""},
		{"STRICT mTLS, a caller without it", []string{`pa:{"mtls":{"mode":"STRICT"}}`}, "", Request{Path: "/"}, dataplane.VerdictDeny, 0, "the connection is refused: PeerAuthentication STRICT", ""},
		{"STRICT mTLS, a caller with it", []string{`pa:{"mtls":{"mode":"STRICT"}}`}, "", Request{Path: "/", FromPrincipal: frontend}, dataplane.VerdictAllow, 200, "no policy denies it", ""},
		{"ALLOW from a namespace", []string{`ap:{"rules":[{"from":[{"source":{"namespaces":["shop"]}}]}]}`}, "", Request{Path: "/", FromPrincipal: "cluster.local/ns/other/sa/x"},
			dataplane.VerdictDeny, 403, "rbac_access_denied_matched_policy[none]", ""},
	}
	for _, c := range cases {
		objs := []metav1.Object{meshtest.Pod("shop", "web-0", map[string]string{"app": "web"})}
		for i, o := range c.objects {
			kind, spec, _ := strings.Cut(o, ":")
			spec, dry := strings.CutSuffix(spec, "|dry-run")
			name := "p" + string(rune('0'+i))
			switch kind {
			case "ra":
				objs = append(objs, meshtest.RA(t, "shop", name, spec))
			case "ap":
				ap := meshtest.AP(t, "shop", name, spec)
				if dry {
					ap.Annotations = map[string]string{dataplane.DryRunAnnotation: "true"}
				}
				objs = append(objs, ap)
			case "pa":
				objs = append(objs, meshtest.PA(t, "shop", name, spec))
			}
		}
		st := meshtest.Snapshot(objs...)
		e, err := Explain(st, "istio-system", st.Workloads("shop", nil)[0], c.via, c.req)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		gotStatus := 0
		if e.Status != nil {
			gotStatus = *e.Status
		}
		if e.Verdict != c.verdict || gotStatus != c.status || !strings.Contains(e.DecidedBy, c.decided) {
			t.Errorf("%s: %s (%d) decided by %q; want %s (%d) by %q\n%+v", c.name, e.Verdict, gotStatus, e.DecidedBy, c.verdict, c.status, c.decided, e.Path)
		}
		if c.shadowed != "" && (e.Shadow == nil || e.Shadow.Verdict != c.shadowed) {
			t.Errorf("%s: shadow %+v, want %s", c.name, e.Shadow, c.shadowed)
		}
	}
}

// TestExplainAmbient: through its waypoint, the request meets the waypoint's token check
// and policies, then ztunnel, which sees the waypoint as the caller; addressed to the Pod,
// it meets ztunnel alone.
func TestExplainAmbient(t *testing.T) {
	shop := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{mesh.DataplaneModeLabel: "ambient", mesh.UseWaypointLabel: "waypoint"}}}
	wp := &mesh.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "waypoint", Namespace: "shop"}}
	wp.Spec.GatewayClassName = mesh.WaypointClass
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}}}
	st := meshtest.Snapshot(shop, wp, svc, meshtest.Pod("shop", "web-0", map[string]string{"app": "web"}),
		meshtest.RA(t, "shop", "web-jwt", `{"targetRefs":[{"kind":"Service","group":"","name":"web"}],"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys"}]}`),
		meshtest.AP(t, "shop", "web-require-jwt", `{"targetRefs":[{"kind":"Service","group":"","name":"web"}],"rules":[{"from":[{"source":{"requestPrincipals":["*"]}}]}]}`),
		meshtest.AP(t, "shop", "only-waypoint", `{"selector":{"matchLabels":{"app":"web"}},"rules":[{"from":[{"source":{"principals":["cluster.local/ns/shop/sa/waypoint"]}}]}]}`))
	w := st.Workloads("shop", nil)[0]
	token := &dataplane.Token{Claims: map[string][]string{"iss": {"https://idp.example.com"}, "sub": {"alice"}}}
	from := "cluster.local/ns/shop/sa/frontend"
	e, err := Explain(st, "istio-system", w, ViaDefault, Request{Path: "/", Token: token, FromPrincipal: from})
	if err != nil || e.Verdict != dataplane.VerdictAllow || e.Route != "waypoint shop/waypoint" || len(e.Path) != 2 || e.Path[1].Proxy != "ztunnel" {
		t.Fatalf("through the waypoint with a token: %+v (%v)", e, err)
	}
	if e, _ := Explain(st, "istio-system", w, ViaDefault, Request{Path: "/", FromPrincipal: from}); e.Verdict != dataplane.VerdictDeny || e.Path[0].Proxy != "waypoint shop/waypoint" {
		t.Errorf("through the waypoint without a token: %+v", e)
	}
	// ztunnel answers no HTTP: it resets the connection.
	if e, _ := Explain(st, "istio-system", w, ViaDirect, Request{Path: "/", Token: token, FromPrincipal: from}); e.Verdict != dataplane.VerdictDeny || e.Path[0].Proxy != "ztunnel" ||
		!strings.Contains(e.Path[0].Policies[0].Rules[0].Mismatch, "from[0].source.principals") || e.Status != nil {
		t.Errorf("to the Pod, past the waypoint: %+v", e)
	}
}

// TestCoverage: each verdict of `meshguard coverage`, from the policies of one workload.
func TestCoverage(t *testing.T) {
	const (
		jwt        = `ra:{"selector":{"matchLabels":{"app":"web"}},"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys","audiences":["web"]}]}`
		requireJWT = `ap:{"selector":{"matchLabels":{"app":"web"}},"rules":[{"from":[{"source":{"requestPrincipals":["*"]}}]}]}`
	)
	var headers []string
	for i := range 13 {
		headers = append(headers, fmt.Sprintf(`{"key":"request.headers[x-h%d]","values":["v"]}`, i))
	}
	manyHeaders := strings.Join(headers, ",")
	cases := []struct {
		name    string
		objects []string
		host    bool
		verdict string
		exempt  []string
	}{
		{"no policy", nil, false, Open, nil},
		{"a token required", []string{jwt, requireJWT}, false, Protected, nil},
		{"a token required, but on /healthz", []string{jwt, requireJWT, `ap:{"selector":{"matchLabels":{"app":"web"}},"rules":[{"to":[{"operation":{"paths":["/healthz"]}}]}]}`}, false, Partial, []string{"/healthz"}},
		{"a RequestAuthentication alone", []string{jwt}, false, TokenOptional, nil},
		{"an ALLOW policy of mTLS identities, no token check", []string{`ap:{"rules":[{"from":[{"source":{"namespaces":["shop"]}}]}]}`}, false, TokenOptional, nil},
		{"allow nothing", []string{`ap:{}`}, false, Locked, nil},
		{"a token required, and a DENY on more headers than meshguard tries", []string{jwt, requireJWT, `ap:{"selector":{"matchLabels":{"app":"web"}},"action":"DENY","rules":[{"when":[` + manyHeaders + `]}]}`}, false, TokenOptional, nil},
		{"on the host's network", []string{jwt, requireJWT}, true, NotEnforced, nil},
	}
	for _, c := range cases {
		w := meshtest.Pod("shop", "web-0", map[string]string{"app": "web"})
		w.HostNetwork = c.host
		objs := []metav1.Object{w}
		for i, o := range c.objects {
			kind, spec, _ := strings.Cut(o, ":")
			if kind == "ra" {
				objs = append(objs, meshtest.RA(t, "shop", "p"+string(rune('0'+i)), spec))
			} else {
				objs = append(objs, meshtest.AP(t, "shop", "p"+string(rune('0'+i)), spec))
			}
		}
		got := CoverageOf(meshtest.Snapshot(objs...), "istio-system", w)
		if got.Verdict != c.verdict || strings.Join(got.Exempt, ",") != strings.Join(c.exempt, ",") {
			t.Errorf("%s: %s %v, want %s %v", c.name, got.Verdict, got.Exempt, c.verdict, c.exempt)
		}
	}
}

// TestGatewaysAreProxies: Istio's gateways, as the charts, the Gateway API and AKS's add-on
// label them, enforce their own policies; an application is judged at its sidecar.
func TestGatewaysAreProxies(t *testing.T) {
	for labels, want := range map[string]bool{
		"istio=ingressgateway":                              true,
		"istio=aks-istio-ingressgateway-external":           true,
		"gateway.networking.k8s.io/gateway-name=public":     true,
		"gateway.istio.io/managed=istio.io-mesh-controller": true,
		"app=web": false,
	} {
		k, v, _ := strings.Cut(labels, "=")
		w := meshtest.Pod("ns", "p", map[string]string{k: v})
		if got := mesh.IsProxy(w); got != want {
			t.Errorf("%s: a proxy %v", labels, got)
		}
		if hops := dataplane.RoutesTo(meshtest.Snapshot(w), "istio-system", w, nil)[0].Hops; (hops[0].Proxy == "gateway") != want {
			t.Errorf("%s: enforced at %s", labels, hops[0].Proxy)
		}
	}
}

// TestGatewayNotItsOwnIngress: an ingress gateway's own traffic comes in directly; there
// is no route through itself, on which it would judge a request twice, the second time as
// if from a peer of its own namespace.
func TestGatewayNotItsOwnIngress(t *testing.T) {
	gw := meshtest.Pod("istio-system", "ingressgateway-1", map[string]string{"istio": "ingressgateway"})
	app := meshtest.Pod("shop", "web-1", map[string]string{"app": "web"})
	st := meshtest.Snapshot(gw, app)
	var vias []string
	for _, r := range dataplane.RoutesTo(st, "istio-system", gw, []*mesh.Workload{gw}) {
		vias = append(vias, r.Via)
	}
	if !slices.Equal(vias, []string{"direct"}) {
		t.Errorf("routes to the gateway: %v, want direct only", vias)
	}
	if _, err := Explain(st, "istio-system", gw, ViaIngress, Request{Method: "GET", Path: "/"}); err == nil {
		t.Error("explain through the gateway to itself: no error")
	}
	if routes := dataplane.RoutesTo(st, "istio-system", app, []*mesh.Workload{gw}); len(routes) != 2 || routes[1].Via != "ingress istio-system/ingressgateway-1" {
		t.Errorf("routes to a workload behind it: %+v", routes)
	}
}

// TestNormalizedPath: the dot segments of a request's path are resolved before matching.
func TestNormalizedPath(t *testing.T) {
	for in, want := range map[string]string{
		"/public/../admin": "/admin", "/../admin": "/admin", "/a/./b": "/a/b", "/a/b/..": "/a/",
		"//admin": "//admin", "/a/../b?x=/../c": "/b?x=/../c",
	} {
		if got := normalizedPath(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// TestCoverageNotEnforced: a workload protected as written is not-enforced where no proxy
// applies its JWT policies: ambient, its RequestAuthentication selecting it, which no
// proxy loads (MG801); or in a namespace that turns injection off, with no sidecar.
func TestCoverageNotEnforced(t *testing.T) {
	for name, nsLabels := range map[string]map[string]string{
		"ambient, its RequestAuthentication by selector": {mesh.DataplaneModeLabel: "ambient"},
		"injection disabled":                             {mesh.InjectionLabel: "disabled"},
	} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: nsLabels}}
		w := meshtest.Pod("shop", "web-1", map[string]string{"app": "web"})
		st := meshtest.Snapshot(ns, w, meshtest.RA(t, "shop", "web-jwt", meshtest.WebRA), meshtest.AP(t, "shop", "web-require-jwt", meshtest.WebRequireJWT))
		if got := CoverageOf(st, mesh.DefaultRootNamespace, w); got.Verdict != NotEnforced {
			t.Errorf("%s: coverage %s, want %s", name, got.Verdict, NotEnforced)
		}
	}
}

// TestCoveredLeavesOutTheControlPlane: istiod, ztunnel and the CNI agent of the root
// namespace are not workloads to report; a tenant's Pod labelled like them is.
func TestCoveredLeavesOutTheControlPlane(t *testing.T) {
	st := meshtest.Snapshot(
		meshtest.Pod(mesh.DefaultRootNamespace, "istiod-1", map[string]string{"app": "istiod"}),
		meshtest.Pod(mesh.DefaultRootNamespace, "ztunnel-1", map[string]string{"app": "ztunnel"}),
		meshtest.Pod(mesh.DefaultRootNamespace, "istio-cni-node-1", map[string]string{"k8s-app": "istio-cni-node"}),
		meshtest.Pod("shop", "istiod-1", map[string]string{"app": "istiod"}),
	)
	var got []string
	for _, w := range Covered(st, "") {
		got = append(got, w.Namespace+"/"+w.Name)
	}
	if !slices.Equal(got, []string{"shop/istiod-1"}) {
		t.Errorf("covered %v, want only shop/istiod-1", got)
	}
}
