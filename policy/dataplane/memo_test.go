package dataplane

import (
	"fmt"
	"hash/maphash"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/mesh/meshtest"
)

// TestProtectionByClass: what protects a sidecar workload is worked out once per namespace
// and set of policies that select it, whatever else its labels say; workloads a policy
// tells apart, a PeerAuthentication's selector too, or in another namespace, are told apart.
func TestProtectionByClass(t *testing.T) {
	ra := meshtest.RA(t, "shop", "web-jwt", meshtest.WebRA)
	allow := meshtest.AP(t, "shop", "web-require-jwt", meshtest.WebRequireJWT)
	strict := meshtest.PA(t, "shop", "strict", `{"selector":{"matchLabels":{"tier":"back"}},"mtls":{"mode":"STRICT"}}`)
	web1 := meshtest.Pod("shop", "web-1", map[string]string{"app": "web", "tier": "front", "pod-template-hash": "5d8f"})
	web2 := meshtest.Pod("shop", "web-2", map[string]string{"tier": "front", "app": "web", "pod-template-hash": "77c4"})
	webBack := meshtest.Pod("shop", "web-3", map[string]string{"app": "web", "tier": "back"})
	api := meshtest.Pod("shop", "api-1", map[string]string{"app": "api", "tier": "front"})
	elsewhere := meshtest.Pod("dev", "web-1", map[string]string{"app": "web", "tier": "front"})
	live := meshtest.Snapshot(ra, allow, strict, web1, web2, webBack, api, elsewhere)
	m := NewMemo(live, mesh.DefaultRootNamespace, maphash.MakeSeed())
	for _, w := range []*mesh.Workload{web1, web2, webBack} {
		if !m.Protection(w).RequiresToken() {
			t.Errorf("%s is not protected", w.Name)
		}
	}
	if m.Protection(api).Enforces() || m.Protection(elsewhere).Verifies() {
		t.Error("a Pod with other labels, or in another namespace, took the web Pods' protection")
	}
	if n := classes(m); n != 4 || len(m.byLabels) != 0 {
		t.Errorf("want one entry per namespace and policies selecting (4), have %d, and %d by labels", n, len(m.byLabels))
	}
	if m.Protection(web1).opening != m.Protection(web2).opening {
		t.Error("Pods the same policies select do not share their protection")
	}
	if m.Protection(web1).opening == m.Protection(webBack).opening {
		t.Error("a Pod under another PeerAuthentication shares the protection of those it does not cover")
	}
}

// classes counts the classes of sidecar workloads m knows, in every namespace.
func classes(m *Memo) int {
	n := 0
	for _, ns := range m.namespaces {
		n += len(ns.classes) + len(ns.moreClasses)
	}
	return n
}

// TestManyClasses: a namespace of more classes than it lists keeps the others apart too.
func TestManyClasses(t *testing.T) {
	objects := []metav1.Object{}
	var pods []*mesh.Workload
	for i := range 2 * maxListedClasses {
		app := fmt.Sprintf("app-%d", i)
		objects = append(objects, meshtest.RA(t, "shop", app, strings.Replace(meshtest.WebRA, `"app":"web"`, `"app":"`+app+`"`, 1)))
		pods = append(pods, meshtest.Pod("shop", app+"-1", map[string]string{"app": app}))
	}
	for _, p := range pods {
		objects = append(objects, p)
	}
	live := meshtest.Snapshot(objects...)
	m := NewMemo(live, mesh.DefaultRootNamespace, maphash.MakeSeed())
	for i, p := range pods {
		if ras := m.Protection(p).RAs; len(ras) != 1 || ras[0].Name != p.Labels["app"] {
			t.Errorf("Pod %d: RequestAuthentications %v", i, ras)
		}
	}
	if n := classes(m); n != len(pods) {
		t.Errorf("%d classes, want %d", n, len(pods))
	}
}

// TestProtectionByLabels: an ambient workload's protection, which its waypoint decides, is
// worked out once per label set and namespace, and label sets whose hashes collide are told
// apart.
func TestProtectionByLabels(t *testing.T) {
	ra := meshtest.RA(t, "shop", "web-jwt", meshtest.WebRA)
	ambient := func(name, app string) *mesh.Workload {
		return meshtest.Pod("shop", name, map[string]string{"app": app, mesh.DataplaneModeLabel: "ambient"})
	}
	web1, web2, api := ambient("web-1", "web"), ambient("web-2", "web"), ambient("api-1", "api")
	live := meshtest.Snapshot(ra, web1, web2, api)
	m := NewMemo(live, mesh.DefaultRootNamespace, maphash.MakeSeed())
	for _, w := range []*mesh.Workload{web1, web2, api} {
		if m.Protection(w).Verifies() {
			t.Errorf("%s: ztunnel loads no mesh.RequestAuthentication, yet its tokens are verified", w.Name)
		}
	}
	if n := classes(m); len(m.byLabels) != 2 || n != 0 {
		t.Errorf("want one entry per label set and namespace (2), have %d, and %d by class", len(m.byLabels), n)
	}
	// Labels whose hashes collide are still told apart.
	k := labelsKey{"shop", false, labelsHash(m.seed, api.Labels)}
	m.byLabels[k] = &labelledProtection{labels: web1.Labels, Protection: Protection{RAs: []*mesh.RequestAuthentication{ra}}, next: m.byLabels[k]}
	if m.Protection(ambient("api-2", "api")).Verifies() {
		t.Error("an entry of other labels under the same hash was taken")
	}
}
