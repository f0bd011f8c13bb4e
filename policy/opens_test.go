package policy

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMayOpen(t *testing.T) {
	ap := func(js string) metav1.Object {
		p := &AuthorizationPolicy{ObjectMeta: meta("shop", "p", 0)}
		spec(t, js, &p.Spec)
		return p
	}
	pa := func(js string) metav1.Object {
		p := &PeerAuthentication{ObjectMeta: meta("shop", "p", 0)}
		spec(t, js, &p.Spec)
		return p
	}
	ra := &RequestAuthentication{ObjectMeta: meta("shop", "jwt", 0)}
	for _, c := range []struct {
		name string
		op   Operation
		obj  metav1.Object
		want bool
	}{
		{"a new RequestAuthentication", Create, ra, false},
		{"a new ALLOW", Create, ap(`{"rules": [{}]}`), true},
		{"a new DENY", Create, ap(`{"action": "DENY", "rules": [{}]}`), false},
		{"a new CUSTOM", Create, ap(`{"action": "CUSTOM", "provider": {"name": "ext"}, "rules": [{}]}`), false},
		{"a new AUDIT", Create, ap(`{"action": "AUDIT", "rules": [{}]}`), false},
		{"a new STRICT PeerAuthentication", Create, pa(`{"mtls": {"mode": "STRICT"}}`), false},
		{"a new STRICT PeerAuthentication with a PERMISSIVE port", Create, pa(`{"mtls": {"mode": "STRICT"}, "selector": {"matchLabels": {"app": "web"}}, "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}}}`), true},
		{"a new PERMISSIVE PeerAuthentication", Create, pa(`{"mtls": {"mode": "PERMISSIVE"}}`), true},
		{"a new PeerAuthentication that inherits", Create, pa(`{}`), true},
		{"an UPDATE of a DENY", Update, ap(`{"action": "DENY", "rules": [{}]}`), true},
		{"a DELETE of a RequestAuthentication", Delete, ra, true},
	} {
		if got := MayOpen(c.op, c.obj); got != c.want {
			t.Errorf("%s: MayOpen = %v, want %v", c.name, got, c.want)
		}
	}
}
