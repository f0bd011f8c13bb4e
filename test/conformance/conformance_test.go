package conformance

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	"google.golang.org/protobuf/proto"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/policy/products"
)

var (
	seeds = flag.Int("seeds", 2500, "policy sets generated, each judged on every request")
	seed0 = flag.Uint64("seed", 1, "the first seed")
)

// tally counts the cases of every test, for the one line the suite ends with.
var tally struct{ cases, divergences, refused int }

func TestMain(m *testing.M) {
	code := m.Run()
	fmt.Printf("conformance: %d cases, %d divergences (%d generated policy sets istiod's validation refuses, not judged)\n", tally.cases, tally.divergences, tally.refused)
	if code == 0 && tally.divergences > 0 {
		code = 1
	}
	os.Exit(code)
}

// The vocabulary the generator draws from: values of each field, with their wildcards,
// templates and ranges, and the requests that tell them apart.
var (
	pathValues      = []string{"/admin", "/admin/*", "*/info", "/items/{*}", "/files/{**}", "*", "/"}
	methodValues    = []string{"GET", "POST", "DELETE"}
	hostValues      = []string{"web.example.com", "*.example.com", "web.*", "*"}
	portValues      = []string{"8080", "9090"}
	principalValues = []string{"cluster.local/ns/shop/sa/frontend", "cluster.local/*", "*/ns/other/sa/client", "*", "cluster.local/ns/tenant-a/*"}
	namespaceValues = []string{"shop", "other", "tenant-*", "*"}
	accountValues   = []string{"frontend", "other/client"}
	// trustDomainValues: the mesh's, another's that callers come from, and any.
	trustDomainValues = []string{"cluster.local", "other.td", "*"}
	ipValues          = []string{"203.0.113.0/24", "198.51.100.7", "10.0.0.0/8"}
	headerValues      = []string{"blue", "gr*", "*"}
	rpValues          = []string{"https://idp.example.com/alice", "https://idp.example.com/*", "*", "*/alice", "https://other.example.com/*"}
	groupValues       = []string{"admins", "dev*"}

	requestMethods    = []string{"GET", "POST", "get"}
	requestPaths      = []string{"/", "/admin", "/admin?x=1", "/admin/", "/admin/x", "/x/info", "/items/42", "/items/42/x", "/files/a/b", "/files", "/files/"}
	requestHosts      = []string{"web.example.com", "Web.Example.COM", "api.example.com", "web.example.com:8080", "other.org"}
	requestPorts      = []string{"8080", "9090", "80"}
	requestPrincipals = []string{"", "cluster.local/ns/shop/sa/frontend", "cluster.local/ns/other/sa/client", "cluster.local/ns/tenant-a/sa/x", "other.td/ns/shop/sa/frontend"}
	requestIPs        = []string{"203.0.113.9", "198.51.100.7", "10.1.2.3", "192.0.2.1"}
	requestTeams      = []string{"", "blue", "green", "red"}
	// requestTokens are tokens of the issuer the RequestAuthentication configures, valid
	// for its audience; "" for none.
	requestTokens = []string{"", "alice admins,devs", "bob devs"}
)

// issuer is the one the workload's RequestAuthentication configures, when it has one.
const issuer = "https://idp.example.com"

// workload is the one whose sidecar every case asks of.
var workload = map[string]string{"app": "web"}

// TestConformance: for policy sets generated from a seed, and every request of the
// vocabulary, meshguard's verdict for the workload's sidecar is the one Envoy gives under
// the RBAC istiod generates. It ends with one line: conformance: N cases, D divergences.
func TestConformance(t *testing.T) {
	cases, divergences, skipped := 0, 0, 0
	for s := range uint64(*seeds) {
		r := rand.New(rand.NewPCG(*seed0+s, 0))
		policies := generatePolicies(r)
		verifies := r.IntN(4) != 0 // the workload has a RequestAuthentication
		if !allValid(policies) {
			skipped++
			continue
		}
		filters, err := sidecarRBAC(policies, "shop", workload)
		if err != nil {
			t.Fatalf("seed %d: istiod's translation: %v", *seed0+s, err)
		}
		st, w := meshguardState(policies, verifies)
		c := httpCase{*seed0 + s, filters, st, w, products.ViaDirect, verifies, policies}
		for _, req := range requests() {
			cases++
			c.judge(t, req, &divergences)
		}
	}
	tally.cases, tally.divergences, tally.refused = tally.cases+cases, tally.divergences+divergences, tally.refused+skipped
	if cases < 100_000 && *seeds >= 2500 {
		t.Errorf("only %d cases", cases)
	}
}

// httpCase is a policy set as istiod translates it for one proxy, and as meshguard's state
// holds it, judged on the route via to the workload w.
type httpCase struct {
	seed     uint64
	filters  []*rbacpb.RBAC
	st       *policy.Snapshot
	w        *policy.Workload
	via      string
	verifies bool
	policies []namedPolicy
}

// judge compares meshguard's verdict on req with Envoy's under the filters, and reports a
// divergence (the first ten of a test) with its reproduction.
func (c httpCase) judge(t *testing.T, req request, divergences *int) {
	t.Helper()
	want, _, err := envoyAllows(c.filters, req.envoy(c.verifies))
	if err != nil {
		t.Fatalf("seed %d: evaluating istiod's RBAC: %v", c.seed, err)
	}
	e, err := products.Explain(c.st, rootNamespace, c.w, c.via, req.meshguard())
	if err != nil {
		t.Fatalf("seed %d: meshguard explain: %v", c.seed, err)
	}
	if got := e.Verdict == policy.VerdictAllow; got != want {
		*divergences++
		if *divergences <= 10 {
			t.Errorf("seed %d: %s (a RequestAuthentication: %v): Envoy allows %v, meshguard says %s (decided by %s)\n%s", c.seed, req, c.verifies, want, e.Verdict, e.DecidedBy, reproduction(c.policies))
		}
	}
}

// request is a request of the vocabulary.
type request struct {
	method, path, host, port, principal, ip, team, token string
}

func requests() []request {
	var out []request
	// Every value of each attribute, the others at their first value, and then a sample of
	// combinations: enough to meet every pair a rule may AND.
	base := request{requestMethods[0], requestPaths[0], requestHosts[0], requestPorts[0], requestPrincipals[0], requestIPs[0], requestTeams[0], requestTokens[0]}
	for _, token := range requestTokens {
		for _, pr := range requestPrincipals {
			for _, p := range requestPaths[:4] {
				q := base
				q.token, q.principal, q.path = token, pr, p
				out = append(out, q)
			}
		}
	}
	for _, m := range requestMethods {
		for _, p := range requestPaths {
			for _, pr := range requestPrincipals {
				q := base
				q.method, q.path, q.principal = m, p, pr
				out = append(out, q)
			}
		}
	}
	for _, h := range requestHosts {
		for _, port := range requestPorts {
			for _, ip := range requestIPs {
				for _, team := range requestTeams {
					q := base
					q.host, q.port, q.ip, q.team = h, port, ip, team
					q.principal = requestPrincipals[len(out)%len(requestPrincipals)]
					out = append(out, q)
				}
			}
		}
	}
	return out
}

func (q request) String() string {
	return fmt.Sprintf("%s %s host %s port %s from %q at %s team %q token %q", q.method, q.path, q.host, q.port, q.principal, q.ip, q.team, q.token)
}

// claims are the token's: its subject, and its groups.
func (q request) claims() (sub string, groups []string) {
	sub, list, _ := strings.Cut(q.token, " ")
	return sub, strings.Split(list, ",")
}

// envoy is the request as the sidecar's RBAC filter sees it: with the token's payload in
// jwt_authn's metadata where the workload's RequestAuthentication verifies it.
func (q request) envoy(verifies bool) envoyRequest {
	headers := map[string]string{":method": q.method, ":path": q.path, ":authority": q.host}
	if q.team != "" {
		headers["x-team"] = q.team
	}
	port, _ := strconv.Atoi(q.port)
	principal := ""
	if q.principal != "" {
		principal = "spiffe://" + q.principal
	}
	var payload map[string]any
	if verifies && q.token != "" {
		sub, groups := q.claims()
		list := make([]any, len(groups))
		for i, g := range groups {
			list[i] = g
		}
		payload = map[string]any{"iss": issuer, "sub": sub, "aud": "web", "groups": list}
	}
	return envoyRequest{headers: headers, principal: principal, sourceIP: q.ip, port: uint32(port), payload: payload}
}

func (q request) meshguard() products.Request {
	req := products.Request{Method: q.method, Path: q.path, Host: q.host, Port: q.port, FromPrincipal: q.principal, FromIP: q.ip}
	if q.team != "" {
		req.Headers = map[string]string{"x-team": q.team}
	}
	if q.token != "" {
		sub, groups := q.claims()
		req.Token = &policy.Token{Claims: map[string][]string{"iss": {issuer}, "sub": {sub}, "aud": {"web"}, "groups": groups}}
	}
	return req
}

// generatePolicies draws one to three ALLOW or DENY policies of namespace shop (selecting
// the workload, another one, or the whole namespace), of the root namespace, or of another
// namespace, some in dry run.
func generatePolicies(r *rand.Rand) []namedPolicy {
	return generate(r, func(p *namedPolicy) {
		p.namespace = pick(r, []string{"shop", "shop", "shop", rootNamespace, "other"})
		switch r.IntN(4) {
		case 0, 1:
			p.spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "web"}}
		case 2:
			p.spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "api"}}
		}
	})
}

// generate draws one to three ALLOW or DENY policies, some in dry run, attach saying where
// each applies.
func generate(r *rand.Rand, attach func(*namedPolicy)) []namedPolicy {
	var out []namedPolicy
	for i := range 1 + r.IntN(3) {
		p := namedPolicy{name: fmt.Sprintf("p%d", i), spec: &securityv1beta1.AuthorizationPolicy{}}
		attach(&p)
		if r.IntN(2) == 0 {
			p.spec.Action = securityv1beta1.AuthorizationPolicy_DENY
		}
		if r.IntN(10) == 0 {
			p.annotations = map[string]string{"istio.io/dry-run": "true"}
		}
		for range r.IntN(3) {
			p.spec.Rules = append(p.spec.Rules, generateRule(r))
		}
		if r.IntN(8) == 0 && len(p.spec.Rules) == 0 {
			p.spec.Rules = []*securityv1beta1.Rule{{}}
		}
		out = append(out, p)
	}
	return out
}

func generateRule(r *rand.Rand) *securityv1beta1.Rule {
	rule := &securityv1beta1.Rule{}
	for range r.IntN(3) {
		s := &securityv1beta1.Source{}
		switch r.IntN(9) {
		case 7:
			s.TrustDomains = some(r, trustDomainValues)
		case 8:
			s.NotTrustDomains = some(r, trustDomainValues)
		case 5:
			s.RequestPrincipals = some(r, rpValues)
		case 6:
			s.NotRequestPrincipals = some(r, rpValues)
		case 0:
			s.Principals = some(r, principalValues)
		case 1:
			s.Namespaces = some(r, namespaceValues)
		case 2:
			s.ServiceAccounts = some(r, accountValues)
		case 3:
			s.IpBlocks = some(r, ipValues)
		case 4:
			s.NotPrincipals = some(r, principalValues)
		}
		if r.IntN(4) == 0 {
			s.NotIpBlocks = some(r, ipValues)
		}
		rule.From = append(rule.From, &securityv1beta1.Rule_From{Source: s})
	}
	for range r.IntN(3) {
		o := &securityv1beta1.Operation{}
		switch r.IntN(5) {
		case 0:
			o.Paths = some(r, pathValues)
		case 1:
			o.Methods = some(r, methodValues)
		case 2:
			o.Hosts = some(r, hostValues)
		case 3:
			o.Ports = some(r, portValues)
		case 4:
			o.NotPaths = some(r, pathValues)
		}
		if r.IntN(4) == 0 {
			o.NotMethods = some(r, methodValues)
		}
		rule.To = append(rule.To, &securityv1beta1.Rule_To{Operation: o})
	}
	for range r.IntN(2) {
		c := &securityv1beta1.Condition{}
		switch r.IntN(7) {
		case 4:
			c.Key, c.Values = "request.auth.claims[groups]", some(r, groupValues)
		case 5:
			c.Key, c.Values = "request.auth.audiences", []string{pick(r, []string{"web", "api"})}
		case 6:
			c.Key, c.NotValues = "request.auth.principal", some(r, rpValues)
		case 0:
			c.Key, c.Values = "request.headers[x-team]", some(r, headerValues)
		case 1:
			c.Key, c.NotValues = "request.headers[x-team]", some(r, headerValues)
		case 2:
			c.Key, c.Values = "source.namespace", some(r, namespaceValues)
		case 3:
			c.Key, c.Values = "destination.port", some(r, portValues)
		}
		rule.When = append(rule.When, c)
	}
	return rule
}

func pick(r *rand.Rand, from []string) string { return from[r.IntN(len(from))] }

// some draws one to three values, the first more often alone.
func some(r *rand.Rand, from []string) []string {
	out := []string{pick(r, from)}
	for range r.IntN(3) {
		out = append(out, pick(r, from))
	}
	return out
}

func allValid(policies []namedPolicy) bool {
	for _, p := range policies {
		if !p.valid() {
			return false
		}
	}
	return true
}

// meshguardState is the state meshguard judges the cases in: the namespaces, the workload's
// Pod, its RequestAuthentication where it verifies tokens, and the policies.
func meshguardState(policies []namedPolicy, verifies bool) (*policy.Snapshot, *policy.Workload) {
	st := policy.NewSnapshot()
	for _, ns := range []string{"shop", "other", rootNamespace} {
		st.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"istio-injection": "enabled"}}})
	}
	w := &policy.Workload{Kind: policy.KindPod, ObjectMeta: &metav1.ObjectMeta{Name: "web-0", Namespace: "shop", Labels: workload}}
	st.Add(w)
	if verifies {
		ra := &policy.RequestAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "web-jwt", Namespace: "shop"}}
		ra.Spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: workload}
		ra.Spec.JwtRules = []*securityv1beta1.JWTRule{{Issuer: issuer, JwksUri: issuer + "/keys", Audiences: []string{"web"}}}
		st.Add(ra)
	}
	addPolicies(st, policies)
	return st, w
}

// addPolicies adds the policies to meshguard's state.
func addPolicies(st *policy.Snapshot, policies []namedPolicy) {
	for _, p := range policies {
		ap := &policy.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.namespace, Annotations: p.annotations}}
		proto.Merge(&ap.Spec, p.spec)
		st.Add(ap)
	}
}

// reproduction is the policies of a case as YAML, ready to become a fixture.
func reproduction(policies []namedPolicy) string {
	var b strings.Builder
	for _, p := range policies {
		ap := &policy.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.namespace, Annotations: p.annotations}}
		ap.APIVersion, ap.Kind = "security.istio.io/v1", "AuthorizationPolicy"
		proto.Merge(&ap.Spec, p.spec)
		out, err := yaml.Marshal(ap)
		if err != nil {
			fmt.Fprintf(&b, "# %v\n", err)
		}
		b.WriteString("---\n")
		b.Write(out)
	}
	return b.String()
}
