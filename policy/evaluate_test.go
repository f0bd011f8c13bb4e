package policy

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/mesh/meshtest"
)

// TestMG302SaysWhoIsDenied: without a RequestAuthentication, an ALLOW on token attributes
// denies every request only when nothing else admits one.
func TestMG302SaysWhoIsDenied(t *testing.T) {
	e := NewEngine()
	allow := meshtest.AP(t, "shop", "web-require-jwt", allowRP)
	web := meshtest.Pod("shop", "web-1", map[string]string{"app": "web"})
	healthz := meshtest.AP(t, "shop", "web-healthz", `{"selector":{"matchLabels":{"app":"web"}},"rules":[{"to":[{"operation":{"paths":["/healthz"]}}]}]}`)
	for _, c := range []struct {
		live []string
		want string
	}{
		{nil, "every request there is denied"},
		{[]string{"healthz"}, "only what other rules admit gets in"},
	} {
		state := []metav1.Object{allow, web}
		if len(c.live) > 0 {
			state = append(state, healthz)
		}
		var msg string
		for _, f := range e.Review(Review{Operation: Audit, Object: allow, State: meshtest.Snapshot(state...)}) {
			if f.Rule == "MG302" {
				msg = f.Message
			}
		}
		if !strings.Contains(msg, c.want) {
			t.Errorf("with %v: MG302 says %q, want %q", c.live, msg, c.want)
		}
	}
}

// TestMessagesNameTheScope: a root-namespace policy covers the mesh, and the labels
// meshguard gives the workloads a policy is written for never show.
func TestMessagesNameTheScope(t *testing.T) {
	e := NewEngine()
	meshWide := meshtest.RA(t, "istio-system", "mesh-jwt", `{"jwtRules":[{"issuer":"`+iss+`","audiences":["api://web"]}]}`)
	byService := meshtest.RA(t, "shop", "web-jwt", `{"targetRefs":[{"kind":"Service","name":"web"}],"jwtRules":[{"issuer":"`+iss+`","audiences":["api://web"]}]}`)
	for _, c := range []struct {
		ra          *RequestAuthentication
		want, never string
	}{
		{meshWide, "every workload of the mesh (root namespace istio-system)", "namespace istio-system:"},
		{byService, "the workloads behind Service shop/web, through its waypoint", "meshguard.io/"},
	} {
		var msg string
		for _, f := range e.Review(Review{Operation: Audit, Object: c.ra, State: meshtest.Snapshot(c.ra)}) {
			if f.Rule == "MG301" {
				msg = f.Message
			}
		}
		if !strings.Contains(msg, c.want) || strings.Contains(msg, c.never) {
			t.Errorf("MG301 on %s says %q; want %q, never %q", c.ra.Name, msg, c.want, c.never)
		}
	}
}

// TestMG301NamesTheOpenPorts: a DENY of token-less requests narrowed to ports leaves the
// others open; MG301 names those of the workload's Services it leaves open, and says
// nothing once they are all covered. A selector no running workload matches speaks of the
// workloads to come, beside MG403.
func TestMG301NamesTheOpenPorts(t *testing.T) {
	e := NewEngine()
	ra := meshtest.RA(t, "shop", "web-jwt", `{"selector":{"matchLabels":{"app":"web"}},"jwtRules":[{"issuer":"`+iss+`","audiences":["api://web"]}]}`)
	deny := func(ports string) *AuthorizationPolicy {
		return meshtest.AP(t, "shop", "web-deny", `{"selector":{"matchLabels":{"app":"web"}},"action":"DENY","rules":[{"from":[{"source":{"notRequestPrincipals":["*"]}}],"to":[{"operation":{"ports":[`+ports+`]}}]}]}`)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt(8080)}, {Name: "http-admin", Port: 9090}},
	}}
	named := svc.DeepCopy()
	named.Spec.Ports[1].TargetPort = intstr.FromString("admin")
	web := meshtest.Pod("shop", "web-1", map[string]string{"app": "web"})
	other := meshtest.Pod("shop", "api-1", map[string]string{"app": "api"})
	for _, c := range []struct {
		name  string
		state []metav1.Object
		want  string // "" for no MG301
	}{
		{"one port of two covered", []metav1.Object{deny(`"8080"`), svc, web}, "for Pod shop/web-1 on port 9090 of its Services: a request with no token, from a caller without mTLS gets in"},
		{"both covered", []metav1.Object{deny(`"8080","9090"`), svc, web}, ""},
		{"no Service", []metav1.Object{deny(`"8080","9090"`), web}, "from a caller without mTLS, to a port no policy names gets in"},
		{"a named target port", []metav1.Object{deny(`"8080","9090"`), named, web}, "to a port no policy names"},
		{"no workload selected yet", []metav1.Object{other}, "for workloads labelled app=web in namespace shop: once they run, a request with no token"},
	} {
		var msg string
		for _, f := range e.Review(Review{Operation: Audit, Object: ra, State: meshtest.Snapshot(append(c.state, ra)...)}) {
			if f.Rule == "MG301" {
				msg = f.Message
			}
		}
		if c.want == "" && msg != "" || !strings.Contains(msg, c.want) {
			t.Errorf("%s: MG301 says %q, want %q", c.name, msg, c.want)
		}
	}
}

// TestAffectedReleases: the release ranges of the version rules, at their edges.
func TestAffectedReleases(t *testing.T) {
	for _, c := range []struct {
		name     string
		releases affected
		yes, no  []string
	}{
		{"MG702", headerMatchJoined, []string{"1.27.0", "1.27.7", "1.28.4", "1.29.0"}, []string{"1.26.9", "1.27.8", "1.28.5", "1.29.1", "1.30.0"}},
		{"MG703", serviceAccountRegex, []string{"1.25.0", "1.26.3", "1.27.8", "1.28.5", "1.29.1"}, []string{"1.24.9", "1.27.9", "1.28.6", "1.29.2", "1.30.0"}},
		{"MG704", principalRegex, []string{"1.20.0", "1.27.9", "1.28.6", "1.29.2"}, []string{"1.28.7", "1.29.3", "1.30.0", "2.0.0"}},
		{"MG706", noGatewayClassRefs, []string{"1.24.0", "1.25.9"}, []string{"1.26.0", "1.30.1", "latest"}},
	} {
		for _, v := range c.yes {
			if !c.releases.has(v) {
				t.Errorf("%s: %s not affected", c.name, v)
			}
		}
		for _, v := range c.no {
			if c.releases.has(v) {
				t.Errorf("%s: %s affected", c.name, v)
			}
		}
	}
}

// TestMG812ServiceEntry: an UPDATE of a ServiceEntry that drops its waypoint leaves the
// JWT policy attached to it enforced nowhere.
func TestMG812ServiceEntry(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{DataplaneModeLabel: "ambient"}}}
	gw := &Gateway{ObjectMeta: metav1.ObjectMeta{Name: "egress", Namespace: "shop"}}
	gw.Spec.GatewayClassName = mesh.WaypointClass
	bound := &ServiceEntry{ObjectMeta: metav1.ObjectMeta{Name: "payments", Namespace: "shop", Labels: map[string]string{mesh.UseWaypointLabel: "egress"}}}
	unbound := bound.DeepCopy()
	unbound.Labels = nil
	ap := meshtest.AP(t, "shop", "payments-jwt", `{"targetRefs":[{"kind":"ServiceEntry","group":"networking.istio.io","name":"payments"}],"rules":[{"from":[{"source":{"requestPrincipals":["*"]}}]}]}`)
	live := meshtest.Snapshot(ns, gw, bound, ap)
	fs := NewEngine().Review(Review{Operation: Update, Object: unbound, OldObject: bound, State: live})
	if !has(fs, "MG812") {
		t.Errorf("unbinding the ServiceEntry: %v", rules(fs))
	}
	relabelled := bound.DeepCopy()
	relabelled.Labels["team"] = "payments"
	if fs := NewEngine().Review(Review{Operation: Update, Object: relabelled, OldObject: bound, State: live}); has(fs, "MG812") {
		t.Errorf("a label that binds nothing: %v", rules(fs))
	}
}

// TestAmbientFixes: a fix for an ambient workload names the form that works there, a
// policy attached to its waypoint, not another selector policy that no proxy loads.
func TestAmbientFixes(t *testing.T) {
	ap := meshtest.AP(t, "store", "cart-require-jwt", `{"selector":{"matchLabels":{"app":"cart"}},"rules":[{"from":[{"source":{"requestPrincipals":["*"]}}]}]}`)
	for _, mode := range []string{"ambient", ""} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "store", Labels: map[string]string{DataplaneModeLabel: mode}}}
		fs := NewEngine().Review(Review{Operation: Create, Object: ap, State: meshtest.Snapshot(ns, ap, meshtest.Pod("store", "cart-0", map[string]string{"app": "cart"}))})
		i := slices.IndexFunc(fs, func(f Finding) bool { return f.Rule == "MG302" })
		if i < 0 {
			t.Fatalf("mode %q: no MG302 in %v", mode, rules(fs))
		}
		if got := strings.Contains(fs[i].Fix, "targetRefs"); got != (mode == "ambient") {
			t.Errorf("mode %q: MG302's fix %q", mode, fs[i].Fix)
		}
	}
}

// TestMG812CrossNamespace: deleting a waypoint that Services of another namespace name
// (istio.io/use-waypoint-namespace) unbinds them too.
func TestMG812CrossNamespace(t *testing.T) {
	shop := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{
		DataplaneModeLabel: "ambient", mesh.UseWaypointLabel: "shared", mesh.UseWaypointNamespaceLabel: "waypoints"}}}
	gw := &Gateway{ObjectMeta: metav1.ObjectMeta{Name: "shared", Namespace: "waypoints"}}
	gw.Spec.GatewayClassName = mesh.WaypointClass
	from := gatewayv1.NamespacesFromAll
	gw.Spec.Listeners = []gatewayv1.Listener{{Name: "mesh", Port: 15008, Protocol: "HBONE", AllowedRoutes: &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: &from}}}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}}}
	ra := meshtest.RA(t, "shop", "web-jwt", `{"targetRefs":[{"kind":"Service","group":"","name":"web"}],"jwtRules":[{"issuer":"https://idp.example.com","jwksUri":"https://idp.example.com/keys"}]}`)
	live := meshtest.Snapshot(shop, gw, svc, ra, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "waypoints"}})
	fs := NewEngine().Review(Review{Operation: Delete, Object: gw, OldObject: gw, State: live})
	if !has(fs, "MG812") {
		t.Errorf("deleting the shared waypoint: %v", rules(fs))
	}
}
