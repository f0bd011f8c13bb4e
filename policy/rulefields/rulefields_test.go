package rulefields

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	securityv1beta1 "istio.io/api/security/v1beta1"
)

// TestFieldRowsCoverTheAPI: every field of Istio's Source and Operation messages has one
// row, positive and negative, and each row's attribute has its own, so that a field Istio
// adds is given a meaning here before the engine reads policies that use it.
func TestFieldRowsCoverTheAPI(t *testing.T) {
	check := func(md protoreflect.MessageDescriptor, rows []string) {
		t.Helper()
		var fields []string
		for i := range md.Fields().Len() {
			fields = append(fields, md.Fields().Get(i).JSONName())
		}
		slices.Sort(fields)
		slices.Sort(rows)
		if !slices.Equal(fields, rows) {
			t.Errorf("%s: the API has the fields %v, the rows name %v", md.FullName(), fields, rows)
		}
	}
	var source, operation []string
	for _, f := range Source {
		source = append(source, f.Name, f.Not)
		if _, ok := attributes[f.Attr]; !ok {
			t.Errorf("source field %s reads %s, which has no row", f.Name, f.Attr)
		}
	}
	for _, f := range Operation {
		operation = append(operation, f.Name, f.Not)
		if _, ok := attributes[f.Attr]; !ok {
			t.Errorf("operation field %s reads %s, which has no row", f.Name, f.Attr)
		}
	}
	check((&securityv1beta1.Source{}).ProtoReflect().Descriptor(), source)
	check((&securityv1beta1.Operation{}).ProtoReflect().Descriptor(), operation)
	for key := range whenKeys {
		if _, ok := attributes[key]; !ok {
			t.Errorf("when key %s has no attribute row", key)
		}
	}
}

// TestFieldReadings pins what each proxy makes of the fields, as the lists the rules used
// before the table said it.
func TestFieldReadings(t *testing.T) {
	if want := []string{PeerPrincipal, Namespace, ServiceAccount, TrustDomain}; !slices.Equal(PeerAttributes, want) {
		t.Errorf("peer attributes %v, want %v", PeerAttributes, want)
	}
	for key, want := range map[string]Ztunnel{
		"source.ip": ZtunnelL4, "source.namespace": ZtunnelL4, "source.principal": ZtunnelL4, "destination.ip": ZtunnelL4, "destination.port": ZtunnelL4,
		"source.serviceAccount": ZtunnelHTTPSilent, "source.trustDomain": ZtunnelHTTPSilent, "remote.ip": ZtunnelHTTPSilent, "connection.sni": ZtunnelHTTPSilent,
		"request.auth.principal": ZtunnelHTTP, "request.auth.claims[groups]": ZtunnelHTTP, "request.headers[x-a]": ZtunnelHTTP, "experimental.envoy.filters.a.b[c]": ZtunnelHTTP,
	} {
		if z, known := WhenKey(key); z != want || !known {
			t.Errorf("when key %s: ztunnel reading %d (known %v), want %d", key, z, known, want)
		}
	}
	for _, key := range []string{"request.auth.claims.groups", "source.user", "request.headers[a][b]"} {
		if KnownWhenKey(key) {
			t.Errorf("when key %s is known, want unknown", key)
		}
	}
	rule := func(from *securityv1beta1.Source, to *securityv1beta1.Operation, when ...string) *securityv1beta1.Rule {
		r := &securityv1beta1.Rule{}
		if from != nil {
			r.From = []*securityv1beta1.Rule_From{{Source: from}}
		}
		if to != nil {
			r.To = []*securityv1beta1.Rule_To{{Operation: to}}
		}
		for _, k := range when {
			r.When = append(r.When, &securityv1beta1.Condition{Key: k, Values: []string{"v"}})
		}
		return r
	}
	for _, c := range []struct {
		name            string
		r               *securityv1beta1.Rule
		httpOnly, httpZ bool
	}{
		{"principals", rule(&securityv1beta1.Source{Principals: []string{"a"}}, nil), false, false},
		{"requestPrincipals", rule(&securityv1beta1.Source{NotRequestPrincipals: []string{"*"}}, nil), true, true},
		{"remoteIpBlocks", rule(&securityv1beta1.Source{RemoteIpBlocks: []string{"1.2.3.4"}}, nil), false, true},
		{"trustDomains", rule(&securityv1beta1.Source{TrustDomains: []string{"td"}}, nil), false, false},
		{"ports", rule(nil, &securityv1beta1.Operation{Ports: []string{"80"}}), false, false},
		{"methods", rule(nil, &securityv1beta1.Operation{Methods: []string{"GET"}}), true, true},
		{"header key", rule(nil, nil, "request.headers[x-a]"), true, true},
		{"remote.ip key", rule(nil, nil, "remote.ip"), false, true},
		{"destination.port key", rule(nil, nil, "destination.port"), false, false},
	} {
		if got := UsesHTTP(c.r); got != c.httpOnly {
			t.Errorf("%s: UsesHTTP %v, want %v", c.name, got, c.httpOnly)
		}
		if got := HTTPLevel(c.r); got != c.httpZ {
			t.Errorf("%s: HTTP-level at ztunnel %v, want %v", c.name, got, c.httpZ)
		}
	}
}
