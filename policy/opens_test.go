package policy

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy/mesh/meshtest"
)

func TestMayOpen(t *testing.T) {
	ap := func(js string) metav1.Object {
		p := &AuthorizationPolicy{ObjectMeta: meshtest.Meta("shop", "p", 0)}
		meshtest.Spec(t, js, &p.Spec)
		return p
	}
	pa := func(js string) metav1.Object {
		p := &PeerAuthentication{ObjectMeta: meshtest.Meta("shop", "p", 0)}
		meshtest.Spec(t, js, &p.Spec)
		return p
	}
	ra := &RequestAuthentication{ObjectMeta: meshtest.Meta("shop", "jwt", 0)}
	labelled := func(o metav1.Object) metav1.Object {
		o.SetLabels(map[string]string{"team": "web"})
		return o
	}
	for _, c := range []struct {
		name string
		op   Operation
		obj  metav1.Object
		old  metav1.Object
		want bool
	}{
		{"a new RequestAuthentication", Create, ra, nil, false},
		{"a new ALLOW", Create, ap(`{"rules": [{}]}`), nil, true},
		{"a new DENY", Create, ap(`{"action": "DENY", "rules": [{}]}`), nil, false},
		{"a new CUSTOM", Create, ap(`{"action": "CUSTOM", "provider": {"name": "ext"}, "rules": [{}]}`), nil, false},
		{"a new AUDIT", Create, ap(`{"action": "AUDIT", "rules": [{}]}`), nil, false},
		{"a new STRICT PeerAuthentication", Create, pa(`{"mtls": {"mode": "STRICT"}}`), nil, false},
		{"a new STRICT PeerAuthentication with a PERMISSIVE port", Create, pa(`{"mtls": {"mode": "STRICT"}, "selector": {"matchLabels": {"app": "web"}}, "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}}}`), nil, true},
		{"a new PERMISSIVE PeerAuthentication", Create, pa(`{"mtls": {"mode": "PERMISSIVE"}}`), nil, true},
		{"a new PeerAuthentication that inherits", Create, pa(`{}`), nil, true},
		{"an UPDATE of a DENY", Update, ap(`{"action": "DENY", "rules": [{}]}`), ap(`{"rules": [{}]}`), true},
		{"a DELETE of a RequestAuthentication", Delete, ra, nil, true},
		{"an UPDATE that changes nothing", Update, ap(`{"action": "DENY", "rules": [{}]}`), ap(`{"action": "DENY", "rules": [{}]}`), false},
		{"an UPDATE that only labels", Update, labelled(ap(`{"rules": [{}]}`)), ap(`{"rules": [{}]}`), true},
	} {
		if got := MayOpen(c.op, c.obj, c.old); got != c.want {
			t.Errorf("%s: MayOpen = %v, want %v", c.name, got, c.want)
		}
	}
}
