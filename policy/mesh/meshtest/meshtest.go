// Package meshtest builds the mesh model's objects for tests: policies from their spec in
// proto JSON, Pods as workloads, and snapshots of them.
package meshtest

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy/mesh"
)

// The specs (proto JSON) most tests start from: web's RequestAuthentication, of Issuer,
// and the ALLOW policy that requires its tokens.
const (
	Issuer        = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"
	WebRA         = `{"selector":{"matchLabels":{"app":"web"}},"jwtRules":[{"issuer":"` + Issuer + `","jwksUri":"https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/discovery/keys","audiences":["api://web"]}]}`
	WebRequireJWT = `{"selector":{"matchLabels":{"app":"web"}},"rules":[{"from":[{"source":{"requestPrincipals":["` + Issuer + `/*"]}}]}]}`
)

// Meta is an object's metadata, created age seconds after the epoch (Istio ranks equal
// policies by age).
func Meta(ns, name string, age int) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(time.Unix(int64(age), 0))}
}

// Spec reads js, proto JSON, into a spec.
func Spec(t testing.TB, js string, into proto.Message) {
	t.Helper()
	if err := protojson.Unmarshal([]byte(js), into); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
}

// RA is a RequestAuthentication of the spec js.
func RA(t testing.TB, ns, name, js string) *mesh.RequestAuthentication {
	t.Helper()
	o := &mesh.RequestAuthentication{ObjectMeta: Meta(ns, name, 0)}
	Spec(t, js, &o.Spec)
	return o
}

// AP is an AuthorizationPolicy of the spec js.
func AP(t testing.TB, ns, name, js string) *mesh.AuthorizationPolicy {
	t.Helper()
	o := &mesh.AuthorizationPolicy{ObjectMeta: Meta(ns, name, 0)}
	Spec(t, js, &o.Spec)
	return o
}

// PA is a PeerAuthentication of the spec js.
func PA(t testing.TB, ns, name, js string) *mesh.PeerAuthentication {
	t.Helper()
	o := &mesh.PeerAuthentication{ObjectMeta: Meta(ns, name, 0)}
	Spec(t, js, &o.Spec)
	return o
}

// Pod is a Pod's workload of these labels.
func Pod(ns, name string, labels map[string]string) *mesh.Workload {
	return &mesh.Workload{ObjectMeta: &metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Kind: mesh.KindPod}
}

// Snapshot is a snapshot of objs, added in this order.
func Snapshot(objs ...metav1.Object) *mesh.Snapshot {
	s := mesh.NewSnapshot()
	for _, o := range objs {
		s.Add(o)
	}
	return s
}

// Attributes reads a class of request written as attr=value pairs, space-separated.
func Attributes(s string) map[string]string {
	req := map[string]string{}
	for _, kv := range strings.Fields(s) {
		k, v, _ := strings.Cut(kv, "=")
		req[k] = v
	}
	return req
}
