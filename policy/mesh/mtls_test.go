package mesh_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/mesh/meshtest"
)

// TestMTLSMode: the mode in force for a workload, level by level, and its ports.
func TestMTLSMode(t *testing.T) {
	w := meshtest.Pod("shop", "web-1", map[string]string{"app": "web"})
	meshWide := meshtest.PA(t, "istio-system", "mesh", `{"mtls":{"mode":"STRICT"}}`)
	nsUnset := meshtest.PA(t, "shop", "unset", `{}`)
	nsPerm := meshtest.PA(t, "shop", "perm", `{"mtls":{"mode":"PERMISSIVE"}}`)
	wlDisable := meshtest.PA(t, "shop", "wl", `{"selector":{"matchLabels":{"app":"web"}},"mtls":{"mode":"DISABLE"}}`)
	cases := []struct {
		name string
		pas  []metav1.Object
		want string
	}{
		{"nothing means PERMISSIVE", nil, "PERMISSIVE"},
		{"mesh", []metav1.Object{meshWide}, "STRICT"},
		{"namespace UNSET defers to mesh", []metav1.Object{meshWide, nsUnset}, "STRICT"},
		{"namespace beats mesh", []metav1.Object{meshWide, nsPerm}, "PERMISSIVE"},
		{"oldest namespace-wide wins", []metav1.Object{meshWide, nsUnset, nsPerm}, "STRICT"},
		{"workload beats namespace", []metav1.Object{meshWide, nsPerm, wlDisable}, "DISABLE"},
		// A port of the workload's own policy lets plaintext in: mTLS is not STRICT for it.
		{"a port DISABLE under STRICT", []metav1.Object{meshtest.PA(t, "shop", "wl", `{"selector":{"matchLabels":{"app":"web"}},"mtls":{"mode":"STRICT"},"portLevelMtls":{"8080":{"mode":"DISABLE"}}}`)}, "DISABLE"},
		{"a port PERMISSIVE, the mode the mesh's", []metav1.Object{meshWide, meshtest.PA(t, "shop", "wl", `{"selector":{"matchLabels":{"app":"web"}},"portLevelMtls":{"8080":{"mode":"PERMISSIVE"}}}`)}, "PERMISSIVE"},
		{"a port STRICT under STRICT", []metav1.Object{meshtest.PA(t, "shop", "wl", `{"selector":{"matchLabels":{"app":"web"}},"mtls":{"mode":"STRICT"},"portLevelMtls":{"8080":{"mode":"STRICT"}}}`)}, "STRICT"},
		{"ports of a namespace-wide policy are not read", []metav1.Object{meshtest.PA(t, "shop", "ns", `{"mtls":{"mode":"STRICT"},"portLevelMtls":{"8080":{"mode":"DISABLE"}}}`)}, "STRICT"},
	}
	for _, c := range cases {
		if got := mesh.MTLSMode(meshtest.Snapshot(c.pas...), mesh.DefaultRootNamespace, w).String(); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
