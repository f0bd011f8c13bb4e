package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshguard/meshguard/api/v1alpha1"
	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/mesh/meshtest"
	"github.com/meshguard/meshguard/policy/products"
)

const iss = meshtest.Issuer

// rules lists "ID action" for findings, to compare in tests.
func rules(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Rule+" "+string(f.Action))
	}
	return out
}

// change is the review of one change against a live state, for tables of them.
type change struct {
	op       Operation
	obj, old metav1.Object
	live     []metav1.Object
}

func (c change) findings(e *Engine) []Finding {
	return e.Review(Review{Operation: c.op, Object: c.obj, OldObject: c.old, State: meshtest.Snapshot(c.live...)})
}

func has(fs []Finding, rule string) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return f.Rule == rule })
}

const (
	goodRA  = meshtest.WebRA
	allowRP = meshtest.WebRequireJWT
)

func TestPrincipalProblem(t *testing.T) {
	cases := map[string]bool{ // value -> can match
		"*":                             true,
		iss + "/*":                      true,
		iss + "/user-1":                 true,
		"https://sts.windows.net/tid/*": false, // iss would lack its trailing slash
		"https://idp.example.com/*":     true,
		"*@example.com":                 true,
		"https://idp*":                  false, // splits into "https:/" and "idp*"
		"https://idp.example.com/us*er": false,
		"https://idp.example.com/":      false, // empty subject
		"/sub":                          false,
		"*.example.com/sub":             true,
		"https://a*b.example.com/sub":   false,
		"issuer-foo/*":                  true,
		"justaname":                     false,
		"https://login.microsoftonline.com/t/v2.0/*": true,
	}
	for v, ok := range cases {
		if got := principalProblem(v) == ""; got != ok {
			t.Errorf("principalProblem(%q) = %q; want match possible = %v", v, principalProblem(v), ok)
		}
	}
}

func TestInspectJWKS(t *testing.T) {
	pub := `{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","alg":"ES256"}`
	priv := `{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}`
	cases := map[string][]string{ // jwks -> rules it violates
		`{"keys":[` + pub + `]}`:  nil,
		pub:                       nil, // a single key is a key set of one
		`{"keys":[` + priv + `]}`: {"MG106"},
		`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`: {"MG107"},
		`{"keys":[]}`:              {"MG108"},
		`not json`:                 {"MG108"},
		`{"keys":[{"kty":"XYZ"}]}`: {"MG108"},
		`{"keys":[` + strings.Replace(pub, "ES256", "none", 1) + `]}`: {"MG108"},
		`{"keys":[{"kty":"RSA","e":"AQAB","n":"AQAB"}]}`:              {"MG108"}, // 17-bit modulus
		`{"keys":[1]}`: {"MG108"},
	}
	for jwks, want := range cases {
		var got []string
		for _, p := range inspectJWKS(jwks) {
			got = append(got, p.rule)
		}
		if !slices.Equal(got, want) {
			t.Errorf("inspectJWKS(%.60s) = %v; want %v", jwks, got, want)
		}
	}
}

func FuzzInspectJWKS(f *testing.F) {
	f.Add(`{"keys":[{"kty":"RSA","e":"AQAB","n":"AQAB","d":"AQ"}]}`)
	f.Add(`{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}`)
	f.Add(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`)
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range inspectJWKS(s) {
			if p.rule == "" || p.msg == "" {
				t.Fatalf("empty problem %+v", p)
			}
		}
	})
}

func FuzzPrincipalProblem(f *testing.F) {
	for _, s := range []string{"*", iss + "/*", "https://idp*", "a/b/c*", "*x/y*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { principalProblem(s) })
}

func TestParseEntra(t *testing.T) {
	for raw, want := range map[string]string{
		"https://login.microsoftonline.com/common/discovery/v2.0/keys": "login.microsoftonline.com common v2",
		"https://LOGIN.MicrosoftOnline.com:443/TID/v2.0":               "login.microsoftonline.com tid v2",
		"https://sts.windows.net/72f988bf/":                            "sts.windows.net 72f988bf v1",
		"https://user@login.windows.net/tid/discovery/keys":            "login.windows.net tid v1",
		"https://example.com/login.microsoftonline.com/tid/v2.0":       "",
		"https://login%2Emicrosoftonline.com/tid/v2.0":                 "",
		"https://login.microsoftonline.com.evil.example/tid/v2.0":      "",
		"login.microsoftonline.com/tid/v2.0":                           "",
	} {
		got := ""
		if e, ok := parseEntra(raw); ok {
			version := "v1"
			if e.v2 {
				version = "v2"
			}
			got = e.host + " " + e.tenant + " " + version
		}
		if got != want {
			t.Errorf("parseEntra(%q) = %q, want %q", raw, got, want)
		}
	}
}

// TestHostInside: the hosts meshguard takes for internal to the cluster or the node.
func TestHostInside(t *testing.T) {
	for host, internal := range map[string]bool{
		"169.254.169.254": true, "127.0.0.1": true, "10.0.0.1": true, "::1": true, "localhost": true,
		"keycloak": true, "keycloak.auth": true, "myorg.github.io": false, "keycloak.auth.svc": true, "keycloak.auth.svc.cluster.local": true,
		"metadata.google.internal": true, "login.microsoftonline.com": false, "8.8.8.8": false, "": false,
		// Documentation names stand for public hosts; longer names are no service.namespace.
		"id.payroll.example": false, "idp.test": false, "auth.example": false, "keycloak.auth.corp": false,
	} {
		if why, _ := hostInside(host); (why != "") != internal {
			t.Errorf("hostInside(%q) = %q", host, why)
		}
	}
}

func TestLeaksFallbackKey(t *testing.T) {
	for v, leaks := range map[string]bool{
		"1.20.8": false, "1.21.0": true, "1.24.2-distroless": true, "v1.27.7": true, "1.27.8": false,
		"1.28.4": true, "1.28.5": false, "1.29.0": true, "1.29.1": false, "1.30.0": false, "latest": false,
	} {
		if got := fallbackKeyLeak.has(v); got != leaks {
			t.Errorf("fallbackKeyLeak.has(%q) = %v", v, got)
		}
	}
}

func guardrail(name string, s v1alpha1.MeshGuardrailSpec) *MeshGuardrail {
	return &MeshGuardrail{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: s}
}

func TestSettingsStricterWins(t *testing.T) {
	prod := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"env": "prod"}}}
	st := meshtest.Snapshot(prod,
		guardrail("a-all", v1alpha1.MeshGuardrailSpec{Rules: map[string]Action{"MG301": Warn, "MG401": Off},
			JWT: &v1alpha1.JWTGuardrail{TrustedIssuers: []v1alpha1.TrustedIssuer{{Issuer: iss}}}}),
		guardrail("b-prod", v1alpha1.MeshGuardrailSpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}},
			Rules:             map[string]Action{"MG301": Deny, "MG401": Warn},
			RequireSelectors:  true,
			Coverage:          &v1alpha1.CoverageGuardrail{Required: true, PodLabels: map[string]string{"enablesecurity": "{namespace}"}, AllowOptOut: true},
			JWT:               &v1alpha1.JWTGuardrail{TrustedIssuers: []v1alpha1.TrustedIssuer{{Issuer: "https://other"}}}}),
	)
	s := st.Settings("shop")
	if s.Actions["MG301"] != Deny || s.Actions["MG401"] != Warn || !s.RequireSelectors || len(s.TrustedIssuers) != 2 {
		t.Errorf("prod namespace: %+v", s)
	}
	if s.Coverage == nil || s.Coverage.Labels["enablesecurity"] != "shop" || !s.Coverage.AllowOptOut {
		t.Errorf("coverage: %+v", s.Coverage)
	}
	other := st.Settings("dev")
	if other.Actions["MG301"] != Warn || other.Actions["MG401"] != Off || other.RequireSelectors || other.Coverage != nil {
		t.Errorf("dev namespace: %+v", other)
	}
	// enforcementAction: warn only where every guardrail governing the namespace says so.
	rollout := func(name, env string) *MeshGuardrail {
		g := guardrail(name, v1alpha1.MeshGuardrailSpec{EnforcementAction: "warn"})
		if env != "" {
			g.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": env}}
		}
		return g
	}
	st = meshtest.Snapshot(prod, rollout("all", ""), guardrail("prod", v1alpha1.MeshGuardrailSpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}))
	if st.Settings("shop").WarnOnly || !st.Settings("dev").WarnOnly {
		t.Errorf("warn only: shop %v, dev %v", st.Settings("shop").WarnOnly, st.Settings("dev").WarnOnly)
	}
	if meshtest.Snapshot(prod).Settings("shop").WarnOnly {
		t.Error("warn only with no guardrail")
	}
}

func TestGuardrailOverrides(t *testing.T) {
	e := NewEngine()
	ra := meshtest.RA(t, "shop", "web-jwt", `{"jwtRules":[{"issuer":"`+iss+`","audiences":["api://web"]}]}`)
	review := func(rails ...metav1.Object) []string {
		return rules(e.Review(Review{Operation: Audit, Object: ra, State: meshtest.Snapshot(append(rails, ra)...)}))
	}
	if got := review(); !slices.Equal(got, []string{"MG301 warn", "MG401 warn"}) {
		t.Errorf("defaults: %v", got)
	}
	if got := review(guardrail("g", v1alpha1.MeshGuardrailSpec{Rules: map[string]Action{"MG301": Deny, "MG401": Off}})); !slices.Equal(got, []string{"MG301 deny"}) {
		t.Errorf("overrides: %v", got)
	}
	if got := review(guardrail("g", v1alpha1.MeshGuardrailSpec{RequireSelectors: true})); !slices.Equal(got, []string{"MG401 deny", "MG301 warn"}) {
		t.Errorf("requireSelectors: %v", got)
	}
}

func TestReviewRegressions(t *testing.T) {
	e := NewEngine()
	ra := meshtest.RA(t, "shop", "web-jwt", goodRA)
	allow := meshtest.AP(t, "shop", "web-require-jwt", allowRP)
	denyNoToken := meshtest.AP(t, "shop", "deny-no-token", `{"selector":{"matchLabels":{"app":"web"}},"action":"DENY","rules":[{"from":[{"source":{"notRequestPrincipals":["*"]}}]}]}`)
	denyClaims := meshtest.AP(t, "shop", "deny-guests", `{"selector":{"matchLabels":{"app":"web"}},"action":"DENY","rules":[{"when":[{"key":"request.auth.claims[roles]","values":["guest"]}]}]}`)
	web := meshtest.Pod("shop", "web-1", map[string]string{"app": "web"})
	weakened := meshtest.AP(t, "shop", "web-require-jwt", `{"selector":{"matchLabels":{"app":"web"}},"rules":[{"to":[{"operation":{"paths":["/"]}}]}]}`)
	// The openings of real configurations: a rule admitting token-less requests on every
	// path beside the one requiring a token; a second ALLOW policy; a DENY narrowed to one
	// path; dry run switched on with a value ParseBool reads as true.
	catchAll := meshtest.AP(t, "shop", "web-require-jwt", `{"selector":{"matchLabels":{"app":"web"}},"rules":[
		{"from":[{"source":{"requestPrincipals":["*"]}}]},{"to":[{"operation":{"paths":["/*"]}}]}]}`)
	secondAllow := meshtest.AP(t, "shop", "web-read", `{"selector":{"matchLabels":{"app":"web"}},"rules":[{"to":[{"operation":{"methods":["GET"]}}]}]}`)
	denyOnePath := meshtest.AP(t, "shop", "deny-no-token", `{"selector":{"matchLabels":{"app":"web"}},"action":"DENY","rules":[{"from":[{"source":{"notRequestPrincipals":["*"]}}],"to":[{"operation":{"paths":["/admin"]}}]}]}`)
	dryRun := meshtest.AP(t, "shop", "web-require-jwt", allowRP)
	dryRun.Annotations = map[string]string{DryRunAnnotation: "True"}
	// Exemptions on purpose: token-less requests admitted on named paths only.
	healthz := meshtest.AP(t, "shop", "web-healthz", `{"selector":{"matchLabels":{"app":"web"}},"rules":[{"to":[{"operation":{"paths":["/healthz","/public/*"]}}]}]}`)
	// Policies padded with values past what the engine tries (the tenant audit's F1): a
	// harmless DENY on two headers of 64 values each, and an ALLOW on GET whose own when
	// lists are padded. Undecided must read as an opening.
	padding := func(key, prefix string) string {
		var values []string
		for i := range 64 {
			values = append(values, fmt.Sprintf("%q", fmt.Sprintf("%s%d", prefix, i)))
		}
		return fmt.Sprintf(`{"key":%q,"values":[%s]}`, key, strings.Join(values, ","))
	}
	paddedDeny := meshtest.AP(t, "shop", "block-scanners", `{"selector":{"matchLabels":{"app":"web"}},"action":"DENY","rules":[{"when":[`+
		padding("request.headers[x-scanner]", "a")+","+padding("request.headers[x-scanner-v]", "b")+`]}]}`)
	paddedAllow := meshtest.AP(t, "shop", "web-read", `{"selector":{"matchLabels":{"app":"web"}},"rules":[{"to":[{"operation":{"methods":["GET"]}}],"when":[`+
		strings.ReplaceAll(padding("request.headers[x-pad-a]", "a")+","+padding("request.headers[x-pad-b]", "b"), `"values"`, `"notValues"`)+`]}]}`)
	// A policy held by a finalizer after its DELETE (the tenant audit's F5) is gone.
	terminating := meshtest.AP(t, "shop", "deny-no-token", `{"selector":{"matchLabels":{"app":"web"}},"action":"DENY","rules":[{"from":[{"source":{"notRequestPrincipals":["*"]}}]}]}`)
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	terminating.Finalizers = []string{"example.com/hold"}
	cases := []struct {
		name      string
		op        Operation
		obj, old  metav1.Object
		live      []metav1.Object
		wantMG303 bool
	}{
		{"delete the only enforcing AP", Delete, allow, allow, []metav1.Object{ra, allow, web}, true},
		{"delete one of two enforcing APs", Delete, allow, allow, []metav1.Object{ra, allow, denyNoToken, web}, false},
		{"update to one named path: an exemption, the rest denied", Update, weakened, allow, []metav1.Object{ra, allow, web}, false},
		{"update adds a catch-all rule", Update, catchAll, allow, []metav1.Object{ra, allow, web}, true},
		{"create a second ALLOW policy", Create, secondAllow, nil, []metav1.Object{ra, allow, web}, true},
		{"same without pods: the selector's workloads", Create, secondAllow, nil, []metav1.Object{ra, allow}, true},
		{"create an ALLOW policy for named paths", Create, healthz, nil, []metav1.Object{ra, allow, web}, false},
		{"update narrows the DENY to one path", Update, denyOnePath, denyNoToken, []metav1.Object{ra, denyNoToken, web}, true},
		{"update switches dry run on", Update, dryRun, allow, []metav1.Object{ra, allow, web}, true},
		{"delete the RA under a DENY on claims", Delete, ra, ra, []metav1.Object{ra, denyClaims, web}, true},
		{"delete an RA nothing depends on", Delete, ra, ra, []metav1.Object{ra, web}, false},
		{"same without pods: the selector's workloads", Delete, allow, allow, []metav1.Object{ra, allow}, true},
		{"delete one of two enforcing APs, the other terminating", Delete, allow, allow, []metav1.Object{ra, allow, terminating, web}, true},
		{"update a terminating AP: its finalizers removed", Update, terminating, denyNoToken, []metav1.Object{ra, allow, terminating, web}, false},
		{"create an ALLOW on GET beside a padded DENY", Create, secondAllow, nil, []metav1.Object{ra, allow, paddedDeny, web}, true},
		{"create an ALLOW on GET padded itself", Create, paddedAllow, nil, []metav1.Object{ra, allow, web}, true},
	}
	for _, c := range cases {
		fs := e.Review(Review{Operation: c.op, Object: c.obj, OldObject: c.old, State: meshtest.Snapshot(c.live...)})
		if has(fs, "MG303") != c.wantMG303 {
			t.Errorf("%s: findings %v", c.name, rules(fs))
		}
		if c.op == Delete && slices.ContainsFunc(fs, func(f Finding) bool { return f.Rule != "MG303" }) {
			t.Errorf("%s: a DELETE is judged only for regressions, got %v", c.name, rules(fs))
		}
	}
}

// TestPolicyMemo: what reviews compile of a namespace's policies and keep with the state is
// not used once the namespace's policies change: when one is added to the snapshot, and in
// the review of a change to them.
func TestPolicyMemo(t *testing.T) {
	e := NewEngine()
	meshRA := meshtest.RA(t, "istio-system", "mesh-jwt", `{"jwtRules":[{"issuer":"`+iss+`","jwksUri":"https://idp.example.com/keys"}]}`)
	openAllow := meshtest.AP(t, "shop", "allow-all", `{"selector":{"matchLabels":{"app":"web"}},"rules":[{}]}`)
	live := meshtest.Snapshot(meshtest.RA(t, "shop", "web-jwt", goodRA), meshtest.AP(t, "shop", "web-require-jwt", allowRP), meshtest.Pod("shop", "web-1", map[string]string{"app": "web"}))
	meshWide := func() []Finding { return e.Review(Review{Operation: Create, Object: meshRA, State: live}) }
	if fs := meshWide(); has(fs, "MG301") {
		t.Fatalf("the web Pods require a token, yet %v", rules(fs))
	}
	if fs := e.Review(Review{Operation: Create, Object: openAllow, State: live}); !has(fs, "MG303") {
		t.Errorf("an ALLOW for everyone in the namespace the memo holds: %v, want MG303", rules(fs))
	}
	live.Add(openAllow)
	if fs := meshWide(); !has(fs, "MG301") {
		t.Errorf("a policy added to the snapshot opens the web Pods, yet %v", rules(fs))
	}
}

// TestKeptFacts: what a workload keeps between reviews (which of its namespace's policies
// select it, whether it is in ambient mode) is worked out again when its namespace's
// labels change, and when Cover labels it.
func TestKeptFacts(t *testing.T) {
	e := NewEngine()
	meshRA := meshtest.RA(t, "istio-system", "mesh-jwt", `{"jwtRules":[{"issuer":"`+iss+`","jwksUri":"https://idp.example.com/keys"}]}`)
	meshWide := func(st State) []Finding { return e.Review(Review{Operation: Create, Object: meshRA, State: st}) }

	web := meshtest.Pod("shop", "web-1", map[string]string{"app": "web"})
	live := meshtest.Snapshot(meshtest.RA(t, "shop", "web-jwt", goodRA), web)
	if fs := meshWide(live); !has(fs, "MG301") {
		t.Fatalf("no AuthorizationPolicy requires a token of the sidecar Pod, yet %v", rules(fs))
	}
	live.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{DataplaneModeLabel: "ambient"}}})
	if fs := meshWide(live); has(fs, "MG301") {
		t.Errorf("the namespace moved to ambient mode, whose Pods are MG801's, yet %v", rules(fs))
	}

	rail := guardrail("cov", v1alpha1.MeshGuardrailSpec{Coverage: &v1alpha1.CoverageGuardrail{Required: true, PodLabels: map[string]string{"enablesecurity": "{namespace}"}}})
	bySecurityLabel := func(js string) string { return strings.Replace(js, `"app":"web"`, `"enablesecurity":"shop"`, 1) }
	plain := meshtest.Pod("shop", "web-1", map[string]string{"app": "web"})
	covered := meshtest.Snapshot(rail, meshtest.RA(t, "shop", "web-jwt", bySecurityLabel(goodRA)), meshtest.AP(t, "shop", "web-require-jwt", bySecurityLabel(allowRP)), plain)
	if fs := meshWide(covered); !has(fs, "MG301") {
		t.Fatalf("the Pod lacks the label the policies select, yet %v", rules(fs))
	}
	e.Cover(covered, plain)
	covered.Reindex()
	if fs := meshWide(covered); has(fs, "MG301") {
		t.Errorf("the Pod labelled for coverage is selected by the policies requiring a token, yet %v", rules(fs))
	}
}

// TestMG302Ambient: the effect MG302 names for an ambient Pod is ztunnel's, which enforces
// a selector policy and drops its rules on token attributes: every connection refused
// unless another rule admits some (as MG803 says of the same policy).
func TestMG302Ambient(t *testing.T) {
	e := NewEngine()
	shop := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{DataplaneModeLabel: "ambient"}}}
	web := meshtest.Pod("shop", "web-1", map[string]string{"app": "web"})
	for _, c := range []struct {
		name, ap, effect string
	}{
		{"only a rule on tokens", allowRP, "every connection there is refused"},
		{"and a rule on namespaces", strings.Replace(allowRP, `]}}]}]}`, `]}}]},{"from":[{"source":{"namespaces":["shop"]}}]}]}`, 1), "only what other rules admit gets in"},
	} {
		ap := meshtest.AP(t, "shop", "web-require-jwt", c.ap)
		fs := e.Review(Review{Operation: Create, Object: ap, State: meshtest.Snapshot(shop, meshtest.RA(t, "shop", "web-jwt", goodRA), web)})
		i := slices.IndexFunc(fs, func(f Finding) bool { return f.Rule == "MG302" })
		if i < 0 || !strings.Contains(fs[i].Message, "ztunnel") || !strings.Contains(fs[i].Message, c.effect) {
			t.Errorf("%s: %v", c.name, fs)
		}
	}
}

func TestPeerAuthenticationAge(t *testing.T) {
	e := NewEngine()
	older := meshtest.PA(t, "shop", "default", `{"mtls":{"mode":"STRICT"}}`)
	newer := meshtest.PA(t, "shop", "migration", `{"mtls":{"mode":"STRICT"}}`)
	live := meshtest.Snapshot(older)
	if fs := e.Review(Review{Operation: Create, Object: newer, State: live}); !has(fs, "MG602") {
		t.Errorf("creating a second namespace-wide PA: %v", rules(fs))
	}
	live.Add(newer)
	if fs := e.Review(Review{Operation: Update, Object: older, OldObject: older, State: live}); has(fs, "MG602") {
		t.Errorf("updating the oldest PA: %v", rules(fs))
	}
}

func TestCoverageAndPods(t *testing.T) {
	e := NewEngine()
	rail := func(optOut bool, rules map[string]Action) *MeshGuardrail {
		return guardrail("cov", v1alpha1.MeshGuardrailSpec{Rules: rules,
			Coverage: &v1alpha1.CoverageGuardrail{Required: true, PodLabels: map[string]string{"enablesecurity": "{namespace}"}, AllowOptOut: optOut}})
	}
	exempt := meshtest.Pod("shop", "batch", nil)
	exempt.Annotations = map[string]string{CoverageAnnotation: CoverageExempt}
	plain := meshtest.Pod("shop", "web-1", map[string]string{"app": "web"})

	if l := e.CoverageLabels(meshtest.Snapshot(rail(false, nil)), plain); l == nil || l.Rule != "MG501" || l.Labels["enablesecurity"] != "shop" || !slices.Equal(l.Guardrails, []string{"cov"}) {
		t.Errorf("labels for a plain Pod: %+v", l)
	}
	if l := e.CoverageLabels(meshtest.Snapshot(rail(true, nil)), exempt); l != nil {
		t.Errorf("an allowed opt-out got labels %+v", l)
	}
	if l := e.CoverageLabels(meshtest.Snapshot(rail(false, map[string]Action{"MG501": Off})), plain); l != nil {
		t.Errorf("MG501 off still labels: %+v", l)
	}
	if fs := e.Review(Review{Operation: Create, Object: exempt, State: meshtest.Snapshot(rail(false, nil))}); !has(fs, "MG505") {
		t.Errorf("forbidden opt-out: %v", rules(fs))
	}
	covered := meshtest.Pod("shop", "web-1", map[string]string{"app": "web", "enablesecurity": "shop"})
	relabelled := meshtest.Pod("shop", "web-1", map[string]string{"app": "web", "enablesecurity": "other"})
	fs := e.Review(Review{Operation: Update, Object: relabelled, OldObject: covered, State: meshtest.Snapshot(rail(false, nil), covered)})
	if !slices.Equal(rules(fs), []string{"MG502 deny"}) {
		t.Errorf("changing the coverage label: %v", rules(fs))
	}
	// At admission the mutating webhook labels first: a Pod that reaches validation
	// without the label was not labelled (the call timed out, meshguard was starting).
	if fs := e.Review(Review{Operation: Create, Object: plain, State: meshtest.Snapshot(rail(false, nil))}); !slices.Contains(rules(fs), "MG506 deny") {
		t.Errorf("an unlabelled Pod at admission: %v", rules(fs))
	}
	if fs := e.Review(Review{Operation: Create, Object: covered, State: meshtest.Snapshot(rail(false, nil))}); has(fs, "MG506") {
		t.Errorf("a labelled Pod at admission: %v", rules(fs))
	}
	if l := e.CoverageLabels(meshtest.Snapshot(rail(false, nil)), relabelled); l != nil {
		t.Errorf("a label the Pod sets to another value is overwritten: %+v", l)
	}
	if e.Cover(meshtest.Snapshot(rail(false, nil)), plain); plain.Labels["enablesecurity"] != "shop" || plain.Annotations[CoveredByAnnotation] != "cov" {
		t.Errorf("Cover: %v %v", plain.Labels, plain.Annotations)
	}
}

func TestValidateGuardrail(t *testing.T) {
	e := NewEngine()
	bad := guardrail("bad", v1alpha1.MeshGuardrailSpec{
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: "Maybe"}}},
		RootNamespace:     "Istio_System",
		Rules:             map[string]Action{"MG999": Deny, "mg101": Warn, "MG101": "block"},
		JWT:               &v1alpha1.JWTGuardrail{TrustedIssuers: []v1alpha1.TrustedIssuer{{}}},
		Coverage:          &v1alpha1.CoverageGuardrail{Required: true, PodLabels: map[string]string{"bad key!": "{namespace}", "ok": "no spaces allowed"}},
	})
	errs := e.ValidateGuardrail(bad, nil)
	for _, path := range []string{
		"spec.namespaceSelector.matchExpressions[0].operator", "spec.rootNamespace", "spec.rules[MG999]", "spec.rules[mg101]",
		"spec.rules[MG101]", "spec.jwt.trustedIssuers[0].issuer", "spec.coverage.podLabels[bad key!]", "spec.coverage.podLabels[ok]",
	} {
		if !slices.ContainsFunc(errs, func(e *field.Error) bool { return e.Field == path }) {
			t.Errorf("no error at %s in %v", path, errs)
		}
	}
	good := guardrail("good", v1alpha1.MeshGuardrailSpec{Rules: map[string]Action{"MG301": Deny, "MG206": Off},
		Coverage: &v1alpha1.CoverageGuardrail{Required: true, PodLabels: map[string]string{"enablesecurity": "{namespace}"}}})
	if errs := e.ValidateGuardrail(good, nil); len(errs) > 0 {
		t.Errorf("valid guardrail: %v", errs)
	}
	// A value that expands past 63 characters in a namespace the guardrail governs.
	long := guardrail("long", v1alpha1.MeshGuardrailSpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"jwt": "required"}},
		Coverage: &v1alpha1.CoverageGuardrail{Required: true, PodLabels: map[string]string{"covered": "covered-by-the-platform-{namespace}"}}})
	namespaces := map[string]map[string]string{
		"shop": {"jwt": "required"},
		"payments-settlement-reconciliation-eu-west":             {"jwt": "required"},
		"a-namespace-with-a-long-name-it-does-not-govern-at-all": nil,
	}
	errs = e.ValidateGuardrail(long, namespaces)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "in namespace payments-settlement-reconciliation-eu-west") {
		t.Errorf("a value too long in one namespace: %v", errs)
	}
}

func TestCatalog(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Catalog() {
		if !ruleIDPattern.MatchString(r.ID) || r.Name == "" || r.Summary == "" || r.Why == "" || (r.Check == nil) == (r.Label == nil) || len(r.Kinds) == 0 {
			t.Errorf("incomplete rule %+v", r)
		}
		if r.Default != Deny && r.Default != Warn {
			t.Errorf("%s: default %q", r.ID, r.Default)
		}
		if seen[r.ID] || seen[r.Name] {
			t.Errorf("duplicate %s %s", r.ID, r.Name)
		}
		seen[r.ID], seen[r.Name] = true, true
	}
	if len(seen) != 2*70 { // MG101-117, MG201-209, MG301-310, MG401-407, MG501-506, MG601-602, MG701-704, MG706, MG801-814
		t.Errorf("%d rules, the catalog has 70", len(seen)/2)
	}
}

// TestDescribeNamesTheFirstByName: a message names the same few workloads however the
// state lists them.
func TestDescribeNamesTheFirstByName(t *testing.T) {
	var ws []*Workload
	for _, name := range []string{"web-4", "api-1", "web-2", "api-0", "web-3"} {
		ws = append(ws, meshtest.Pod("shop", name, nil))
	}
	want := "Pod shop/api-0, Pod shop/api-1, Pod shop/web-2, 2 more"
	c := &Context{}
	for range 3 {
		if got := c.describe(ws); got != want {
			t.Errorf("describe %v: %q, want %q", ws, got, want)
		}
		slices.Reverse(ws)
		ws = append(ws[1:], ws[0])
	}
}

// TestLeavingAmbient: a Pod of an ambient namespace relabelled istio.io/dataplane-mode:
// none leaves the mesh at once (istio-cni acts on the label): MG813 on the UPDATE that
// does it, not on later ones, and coverage credits no proxy with enforcing anything.
func TestLeavingAmbient(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{DataplaneModeLabel: "ambient"}}}
	ra := meshtest.RA(t, "shop", "web-jwt", goodRA)
	enrolled := meshtest.Pod("shop", "web-1", map[string]string{"app": "web"})
	left := meshtest.Pod("shop", "web-1", map[string]string{"app": "web", DataplaneModeLabel: "none"})
	injected := meshtest.Pod("shop", "web-1", map[string]string{"app": "web", DataplaneModeLabel: "none", SidecarInjectLabel: "true"})
	e := NewEngine()
	for _, c := range []struct {
		name      string
		obj, old  *Workload
		wantMG813 bool
	}{
		{"relabelled none", left, enrolled, true},
		{"none already", left, left, false},
		{"none, a sidecar injected instead", injected, enrolled, false},
	} {
		fs := e.Review(Review{Operation: Update, Object: c.obj, OldObject: c.old, State: meshtest.Snapshot(ns, ra, c.old)})
		if has(fs, "MG813") != c.wantMG813 {
			t.Errorf("%s: findings %v", c.name, rules(fs))
		}
	}
	if got := products.CoverageOf(meshtest.Snapshot(ns, ra, left), "istio-system", left); got.Verdict != products.NotEnforced || len(got.EnforcedBy) > 0 {
		t.Errorf("coverage of a Pod out of ambient mode: %s by %v", got.Verdict, got.EnforcedBy)
	}
}

// TestTwoStepTeardown: where coverage is required, deleting the RequestAuthentication
// (which locks callers out) and then the policy that demanded a token is refused at the
// second step; elsewhere both steps pass, in that order.
func TestTwoStepTeardown(t *testing.T) {
	allow := meshtest.AP(t, "shop", "web-require-jwt", allowRP)
	web := meshtest.Pod("shop", "web-1", map[string]string{"app": "web"})
	rail := guardrail("cov", v1alpha1.MeshGuardrailSpec{Coverage: &v1alpha1.CoverageGuardrail{Required: true, PodLabels: map[string]string{"covered": "yes"}}})
	e := NewEngine()
	for _, c := range []struct {
		name string
		live []metav1.Object
		want bool
	}{
		{"coverage required", []metav1.Object{allow, web, rail}, true},
		{"no guardrail", []metav1.Object{allow, web}, false},
	} {
		fs := e.Review(Review{Operation: Delete, Object: allow, State: meshtest.Snapshot(c.live...)})
		if has(fs, "MG303") != c.want {
			t.Errorf("%s: the policy's DELETE after the RequestAuthentication's: %v", c.name, rules(fs))
		}
	}
}

// TestPeerAuthenticationWeakened: a change of a PeerAuthentication after which mTLS is no
// longer STRICT for workloads it was STRICT for is MG601, whatever its level (a DELETE, a
// workload's own mode, one port); and MG307 where a DENY matched callers by identity.
func TestPeerAuthenticationWeakened(t *testing.T) {
	web := meshtest.Pod("shop", "web-1", map[string]string{"app": "web"})
	strict := meshtest.PA(t, "shop", "strict", `{"mtls":{"mode":"STRICT"}}`)
	denyOthers := meshtest.AP(t, "shop", "deny-others", `{"selector":{"matchLabels":{"app":"web"}},"action":"DENY","rules":[{"from":[{"source":{"namespaces":["tenant-b"]}}]}]}`)
	workloadPermissive := meshtest.PA(t, "shop", "web", `{"selector":{"matchLabels":{"app":"web"}},"mtls":{"mode":"PERMISSIVE"}}`)
	portDisabled := meshtest.PA(t, "shop", "web", `{"selector":{"matchLabels":{"app":"web"}},"mtls":{"mode":"STRICT"},"portLevelMtls":{"8080":{"mode":"DISABLE"}}}`)
	workloadStrict := meshtest.PA(t, "shop", "web", `{"selector":{"matchLabels":{"app":"web"}},"mtls":{"mode":"STRICT"}}`)
	e := NewEngine()
	for _, c := range []struct {
		name string
		change
		want []string // findings, as rule@field
	}{
		{"the namespace's STRICT deleted", change{Delete, strict, strict, []metav1.Object{strict, denyOthers, web}}, []string{"MG307@metadata.name", "MG601@metadata.name"}},
		{"a workload's own PERMISSIVE", change{Create, workloadPermissive, nil, []metav1.Object{strict, web}}, []string{"MG601@spec.mtls.mode"}},
		{"one port DISABLE", change{Update, portDisabled, workloadStrict, []metav1.Object{workloadStrict, denyOthers, web}}, []string{"MG307@spec.portLevelMtls", "MG601@spec.portLevelMtls"}},
		{"a STRICT one deleted under a STRICT namespace", change{Delete, workloadStrict, workloadStrict, []metav1.Object{strict, workloadStrict, denyOthers, web}}, nil},
	} {
		var got []string
		for _, f := range c.findings(e) {
			got = append(got, f.Rule+"@"+f.Field)
		}
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestWaypointUnboundOtherwise: the other ways to leave a Service's JWT policies enforced
// nowhere are MG812 too: its waypoint made to serve workloads only, or made of another
// class; the Service deleted and created again without its binding.
func TestWaypointUnboundOtherwise(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{DataplaneModeLabel: "ambient"}}}
	waypoint := &Gateway{ObjectMeta: metav1.ObjectMeta{Name: "waypoint", Namespace: "shop", Labels: map[string]string{mesh.WaypointForLabel: "service"}}}
	waypoint.Spec.GatewayClassName = mesh.WaypointClass
	forWorkloads := waypoint.DeepCopy()
	forWorkloads.Labels = map[string]string{mesh.WaypointForLabel: "workload"}
	otherClass := waypoint.DeepCopy()
	otherClass.Spec.GatewayClassName = "other"
	bound := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Labels: map[string]string{mesh.UseWaypointLabel: "waypoint"}}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}}}
	unlabelled := bound.DeepCopy()
	unlabelled.Labels = nil
	ra := meshtest.RA(t, "shop", "web-jwt", `{"targetRefs":[{"kind":"Service","group":"","name":"web"}],"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys","audiences":["web"]}]}`)
	e := NewEngine()
	for _, c := range []struct {
		name string
		change
		want string // the field of MG812, or ""
	}{
		{"the waypoint made to serve workloads only", change{Update, forWorkloads, waypoint, []metav1.Object{ns, waypoint, bound, ra}}, "metadata.labels[istio.io/waypoint-for]"},
		{"the waypoint of another class", change{Update, otherClass, waypoint, []metav1.Object{ns, waypoint, bound, ra}}, "spec.gatewayClassName"},
		{"the Service created again without its binding", change{Create, unlabelled, nil, []metav1.Object{ns, waypoint, ra}}, "metadata.labels[istio.io/use-waypoint]"},
		{"the Service created again bound", change{Create, bound, nil, []metav1.Object{ns, waypoint, ra}}, ""},
	} {
		got := ""
		for _, f := range c.findings(e) {
			if f.Rule == "MG812" {
				got = f.Field
			}
		}
		if got != c.want {
			t.Errorf("%s: MG812 at %q, want %q", c.name, got, c.want)
		}
	}
}

// TestSuppressibleNamesRules: spec.suppressible names rules of the catalog.
func TestSuppressibleNamesRules(t *testing.T) {
	errs := NewEngine().ValidateGuardrail(guardrail("g", v1alpha1.MeshGuardrailSpec{Suppressible: []string{"MG101", "MG999"}}), nil)
	if len(errs) != 1 || errs[0].Field != "spec.suppressible[1]" {
		t.Errorf("errors %v, want one at spec.suppressible[1]", errs)
	}
}
