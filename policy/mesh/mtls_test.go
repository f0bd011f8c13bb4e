package mesh

import (
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newPA(t *testing.T, ns, name, js string) *PeerAuthentication {
	t.Helper()
	pa := &PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := protojson.Unmarshal([]byte(js), &pa.Spec); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return pa
}

func snapshot(objs ...metav1.Object) *Snapshot {
	s := NewSnapshot()
	for _, o := range objs {
		s.Add(o)
	}
	return s
}

// TestMTLSMode: the mode in force for a workload, level by level, and its ports.
func TestMTLSMode(t *testing.T) {
	w := pod("shop", "web-1", map[string]string{"app": "web"})
	meshWide := newPA(t, "istio-system", "mesh", `{"mtls":{"mode":"STRICT"}}`)
	nsUnset := newPA(t, "shop", "unset", `{}`)
	nsPerm := newPA(t, "shop", "perm", `{"mtls":{"mode":"PERMISSIVE"}}`)
	wlDisable := newPA(t, "shop", "wl", `{"selector":{"matchLabels":{"app":"web"}},"mtls":{"mode":"DISABLE"}}`)
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
		{"a port DISABLE under STRICT", []metav1.Object{newPA(t, "shop", "wl", `{"selector":{"matchLabels":{"app":"web"}},"mtls":{"mode":"STRICT"},"portLevelMtls":{"8080":{"mode":"DISABLE"}}}`)}, "DISABLE"},
		{"a port PERMISSIVE, the mode the mesh's", []metav1.Object{meshWide, newPA(t, "shop", "wl", `{"selector":{"matchLabels":{"app":"web"}},"portLevelMtls":{"8080":{"mode":"PERMISSIVE"}}}`)}, "PERMISSIVE"},
		{"a port STRICT under STRICT", []metav1.Object{newPA(t, "shop", "wl", `{"selector":{"matchLabels":{"app":"web"}},"mtls":{"mode":"STRICT"},"portLevelMtls":{"8080":{"mode":"STRICT"}}}`)}, "STRICT"},
		{"ports of a namespace-wide policy are not read", []metav1.Object{newPA(t, "shop", "ns", `{"mtls":{"mode":"STRICT"},"portLevelMtls":{"8080":{"mode":"DISABLE"}}}`)}, "STRICT"},
	}
	for _, c := range cases {
		if got := MTLSMode(snapshot(c.pas...), DefaultRootNamespace, w).String(); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
