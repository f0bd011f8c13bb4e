package conformance

import (
	"testing"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestEnvoyMatchers: the evaluator matches as Envoy's documentation says
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/type/matcher/v3/string.proto,
// .../config/route/v3/route_components.proto#config-route-v3-headermatcher,
// .../config/rbac/v3/rbac.proto): a mistake here would make the oracle wrong.
func TestEnvoyMatchers(t *testing.T) {
	exact := func(v string, fold bool) *matcherpb.StringMatcher {
		return &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Exact{Exact: v}, IgnoreCase: fold}
	}
	regex := func(re string) *matcherpb.StringMatcher {
		return &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_SafeRegex{SafeRegex: &matcherpb.RegexMatcher{Regex: re}}}
	}
	for _, c := range []struct {
		name    string
		matcher *matcherpb.StringMatcher
		value   string
		want    bool
	}{
		{"exact", exact("/admin", false), "/admin", true},
		{"exact is case-sensitive", exact("/admin", false), "/Admin", false},
		{"ignore_case", exact("web.example.com", true), "Web.Example.COM", true},
		{"prefix", &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Prefix{Prefix: "/admin/"}}, "/admin/x", true},
		{"suffix", &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Suffix{Suffix: "/info"}}, "/x/info", true},
		{"a regex matches the whole value", regex(".*/ns/shop/.*"), "spiffe://cluster.local/ns/shop/sa/web", true},
		{"a regex does not match a part", regex("ns/shop"), "spiffe://cluster.local/ns/shop/sa/web", false},
		{"a regex of alternatives matches whole", regex("a|ab"), "ab", true},
	} {
		if got, err := stringMatches(c.matcher, c.value); err != nil || got != c.want {
			t.Errorf("%s: %v (%v)", c.name, got, err)
		}
	}

	method := func(spec *routepb.HeaderMatcher) *routepb.HeaderMatcher { spec.Name = ":method"; return spec }
	for _, c := range []struct {
		name    string
		matcher *routepb.HeaderMatcher
		headers map[string]string
		want    bool
	}{
		{"present", method(&routepb.HeaderMatcher{HeaderMatchSpecifier: &routepb.HeaderMatcher_PresentMatch{PresentMatch: true}}), map[string]string{":method": "GET"}, true},
		{"absent", &routepb.HeaderMatcher{Name: "x-team", HeaderMatchSpecifier: &routepb.HeaderMatcher_PresentMatch{PresentMatch: true}}, map[string]string{}, false},
		{"a missing header matches no string", &routepb.HeaderMatcher{Name: "x-team", HeaderMatchSpecifier: &routepb.HeaderMatcher_StringMatch{StringMatch: exact("", false)}}, map[string]string{}, false},
		{"inverted", &routepb.HeaderMatcher{Name: "x-team", InvertMatch: true, HeaderMatchSpecifier: &routepb.HeaderMatcher_StringMatch{StringMatch: exact("blue", false)}}, map[string]string{}, true},
		{"header names ignore case", &routepb.HeaderMatcher{Name: "X-Team", HeaderMatchSpecifier: &routepb.HeaderMatcher_StringMatch{StringMatch: exact("blue", false)}}, map[string]string{"x-team": "blue"}, true},
	} {
		if got, err := headerMatches(c.matcher, c.headers); err != nil || got != c.want {
			t.Errorf("%s: %v (%v)", c.name, got, err)
		}
	}

	for _, c := range []struct {
		template, path string
		want           bool
	}{
		{"/items/*", "/items/42", true}, {"/items/*", "/items/42/x", false}, {"/items/*", "/items/", false},
		{"/files/**", "/files/a/b", true}, {"/files/**", "/files/", true}, {"/files/**", "/files", false},
	} {
		if got := templateMatches(c.template, c.path); got != c.want {
			t.Errorf("template %s, path %s: %v", c.template, c.path, got)
		}
	}

	// url_path drops the query; an authenticated principal needs a certificate; a range
	// holds its addresses.
	r := envoyRequest{headers: map[string]string{":path": "/admin?x=1"}, sourceIP: "203.0.113.9"}
	path := &rbacpb.Permission{Rule: &rbacpb.Permission_UrlPath{UrlPath: &matcherpb.PathMatcher{Rule: &matcherpb.PathMatcher_Path{Path: exact("/admin", false)}}}}
	if ok, err := permissionMatches(path, r); err != nil || !ok {
		t.Errorf("url_path with a query: %v (%v)", ok, err)
	}
	anyone := &rbacpb.Principal{Identifier: &rbacpb.Principal_Authenticated_{Authenticated: &rbacpb.Principal_Authenticated{PrincipalName: regex(".+")}}}
	if ok, _ := principalMatches(anyone, r); ok {
		t.Error("a plaintext caller matched an authenticated principal")
	}
	cidr := &rbacpb.Principal{Identifier: &rbacpb.Principal_DirectRemoteIp{DirectRemoteIp: &corepb.CidrRange{AddressPrefix: "203.0.113.0", PrefixLen: wrapperspb.UInt32(24)}}}
	if ok, err := principalMatches(cidr, r); err != nil || !ok {
		t.Errorf("an address in its range: %v (%v)", ok, err)
	}
	// A DENY filter that matches decides; an ALLOW filter with no match denies.
	deny := &rbacpb.RBAC{Action: rbacpb.RBAC_DENY, Policies: map[string]*rbacpb.Policy{"d": {Permissions: []*rbacpb.Permission{path}, Principals: []*rbacpb.Principal{cidr}}}}
	allow := &rbacpb.RBAC{Action: rbacpb.RBAC_ALLOW, Policies: map[string]*rbacpb.Policy{"a": {Permissions: []*rbacpb.Permission{path}, Principals: []*rbacpb.Principal{anyone}}}}
	if ok, by, _ := envoyAllows([]*rbacpb.RBAC{deny, allow}, r); ok || by != "d" {
		t.Errorf("DENY first: allowed %v by %q", ok, by)
	}
	if ok, _, _ := envoyAllows([]*rbacpb.RBAC{allow}, r); ok {
		t.Error("no ALLOW policy matched, yet allowed")
	}
}
