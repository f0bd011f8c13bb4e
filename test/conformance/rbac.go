// Package conformance checks meshguard's verdicts against Istio's own code: istiod's
// translation of the policies (istio.io/istio, in this module only), and a small evaluator
// of what it generates, written from Envoy's documented semantics (this file).
package conformance

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	uritemplatepb "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// envoyRequest is an HTTP request as a sidecar's RBAC filter sees it.
type envoyRequest struct {
	// headers by lower-case name, :method, :authority and :path among them.
	headers map[string]string
	// principal is the caller's mTLS identity (spiffe://td/ns/N/sa/S), "" for plaintext.
	principal string
	// sourceIP is the peer's address; the client's too (remote_ip): no proxy in between.
	sourceIP      string
	port          uint32
	destinationIP string
	// payload is the verified token's claims, as jwt_authn writes them to the filter
	// metadata (strings, or lists of them); nil where no token was verified.
	payload map[string]any
}

// jwtFilter is the filter whose metadata holds the payload of the verified token.
const jwtFilter = "envoy.filters.http.jwt_authn"

// policyMatches is Envoy's RBAC policy: some permission and some principal match.
func policyMatches(p *rbacpb.Policy, r envoyRequest) (bool, error) {
	perm, err := anyPermission(p.GetPermissions(), r)
	if err != nil || !perm {
		return false, err
	}
	return anyPrincipal(p.GetPrincipals(), r)
}

func anyPermission(ps []*rbacpb.Permission, r envoyRequest) (bool, error) {
	for _, p := range ps {
		if ok, err := permissionMatches(p, r); err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

func anyPrincipal(ps []*rbacpb.Principal, r envoyRequest) (bool, error) {
	for _, p := range ps {
		if ok, err := principalMatches(p, r); err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// permissionMatches evaluates the permission kinds istiod emits; any other is an error, so
// that the oracle never guesses.
func permissionMatches(p *rbacpb.Permission, r envoyRequest) (bool, error) {
	switch rule := p.GetRule().(type) {
	case *rbacpb.Permission_Any:
		return rule.Any, nil
	case *rbacpb.Permission_AndRules:
		for _, q := range rule.AndRules.GetRules() {
			if ok, err := permissionMatches(q, r); err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	case *rbacpb.Permission_OrRules:
		return anyPermission(rule.OrRules.GetRules(), r)
	case *rbacpb.Permission_NotRule:
		ok, err := permissionMatches(rule.NotRule, r)
		return !ok, err
	case *rbacpb.Permission_Header:
		return headerMatches(rule.Header, r.headers)
	case *rbacpb.Permission_UrlPath:
		// url_path: the path without its query and fragment.
		path, _, _ := strings.Cut(r.headers[":path"], "?")
		path, _, _ = strings.Cut(path, "#")
		return stringMatches(rule.UrlPath.GetPath(), path)
	case *rbacpb.Permission_UriTemplate:
		var t uritemplatepb.UriTemplateMatchConfig
		if err := rule.UriTemplate.GetTypedConfig().UnmarshalTo(&t); err != nil {
			return false, err
		}
		path, _, _ := strings.Cut(r.headers[":path"], "?")
		return templateMatches(t.GetPathTemplate(), path), nil
	case *rbacpb.Permission_DestinationPort:
		return rule.DestinationPort == r.port, nil
	case *rbacpb.Permission_DestinationIp:
		return cidrContains(rule.DestinationIp, r.destinationIP)
	}
	return false, fmt.Errorf("permission %T is not evaluated", p.GetRule())
}

func principalMatches(p *rbacpb.Principal, r envoyRequest) (bool, error) {
	switch id := p.GetIdentifier().(type) {
	case *rbacpb.Principal_Any:
		return id.Any, nil
	case *rbacpb.Principal_AndIds:
		for _, q := range id.AndIds.GetIds() {
			if ok, err := principalMatches(q, r); err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	case *rbacpb.Principal_OrIds:
		return anyPrincipal(id.OrIds.GetIds(), r)
	case *rbacpb.Principal_NotId:
		ok, err := principalMatches(id.NotId, r)
		return !ok, err
	case *rbacpb.Principal_Authenticated_:
		if r.principal == "" {
			return false, nil // no certificate: nothing to match
		}
		return stringMatches(id.Authenticated.GetPrincipalName(), r.principal)
	case *rbacpb.Principal_FilterState:
		// The peer's identity HBONE sets (io.istio.peer_principal); none without mTLS.
		if id.FilterState.GetKey() != "io.istio.peer_principal" {
			return false, fmt.Errorf("filter state %s is not evaluated", id.FilterState.GetKey())
		}
		if r.principal == "" {
			return false, nil
		}
		return stringMatches(id.FilterState.GetStringMatch(), r.principal)
	case *rbacpb.Principal_DirectRemoteIp:
		return cidrContains(id.DirectRemoteIp, r.sourceIP)
	case *rbacpb.Principal_RemoteIp:
		return cidrContains(id.RemoteIp, r.sourceIP)
	case *rbacpb.Principal_Header:
		return headerMatches(id.Header, r.headers)
	case *rbacpb.Principal_Metadata:
		return metadataMatches(id.Metadata, r)
	}
	return false, fmt.Errorf("principal %T is not evaluated", p.GetIdentifier())
}

// metadataMatches is Envoy's MetadataMatcher on jwt_authn's metadata: the value at the
// path, matched by the value matcher; a path that leads nowhere matches nothing.
func metadataMatches(m *matcherpb.MetadataMatcher, r envoyRequest) (bool, error) {
	if m.GetFilter() != jwtFilter {
		return false, fmt.Errorf("metadata of filter %s is not evaluated", m.GetFilter())
	}
	var v any = map[string]any{"payload": r.payload}
	if r.payload == nil {
		v = map[string]any{}
	}
	for _, seg := range m.GetPath() {
		fields, ok := v.(map[string]any)
		if !ok {
			v = nil
			break
		}
		v = fields[seg.GetKey()]
	}
	ok := false
	if v != nil {
		var err error
		if ok, err = valueMatches(m.GetValue(), v); err != nil {
			return false, err
		}
	}
	if m.GetInvert() {
		ok = !ok
	}
	return ok, nil
}

// valueMatches is Envoy's ValueMatcher for the kinds istiod emits.
func valueMatches(m *matcherpb.ValueMatcher, v any) (bool, error) {
	switch p := m.GetMatchPattern().(type) {
	case *matcherpb.ValueMatcher_StringMatch:
		s, ok := v.(string)
		if !ok {
			return false, nil
		}
		return stringMatches(p.StringMatch, s)
	case *matcherpb.ValueMatcher_PresentMatch:
		return p.PresentMatch, nil
	case *matcherpb.ValueMatcher_ListMatch:
		list, ok := v.([]any)
		if !ok {
			return false, nil
		}
		for _, e := range list {
			if ok, err := valueMatches(p.ListMatch.GetOneOf(), e); err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	case *matcherpb.ValueMatcher_OrMatch:
		for _, q := range p.OrMatch.GetValueMatchers() {
			if ok, err := valueMatches(q, v); err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	}
	return false, fmt.Errorf("value matcher %T is not evaluated", m.GetMatchPattern())
}

// headerMatches is Envoy's HeaderMatcher for the kinds istiod emits: present_match and
// string_match, inverted where asked. A header the request lacks matches nothing.
func headerMatches(h *routepb.HeaderMatcher, headers map[string]string) (bool, error) {
	v, present := headers[strings.ToLower(h.GetName())]
	var ok bool
	var err error
	switch m := h.GetHeaderMatchSpecifier().(type) {
	case *routepb.HeaderMatcher_PresentMatch:
		ok = present == m.PresentMatch
	case *routepb.HeaderMatcher_StringMatch:
		if present {
			ok, err = stringMatches(m.StringMatch, v)
		}
	default:
		return false, fmt.Errorf("header matcher %T is not evaluated", h.GetHeaderMatchSpecifier())
	}
	if h.GetInvertMatch() {
		ok = !ok
	}
	return ok, err
}

// stringMatches is Envoy's StringMatcher: exact, prefix, suffix, contains, or an RE2 regex
// matching the whole value; ignore_case where set (not for regexes).
func stringMatches(m *matcherpb.StringMatcher, v string) (bool, error) {
	fold := func(s string) string {
		if m.GetIgnoreCase() {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherpb.StringMatcher_Exact:
		return fold(v) == fold(p.Exact), nil
	case *matcherpb.StringMatcher_Prefix:
		return strings.HasPrefix(fold(v), fold(p.Prefix)), nil
	case *matcherpb.StringMatcher_Suffix:
		return strings.HasSuffix(fold(v), fold(p.Suffix)), nil
	case *matcherpb.StringMatcher_Contains:
		return strings.Contains(fold(v), fold(p.Contains)), nil
	case *matcherpb.StringMatcher_SafeRegex:
		re, err := regexp.Compile("^(?:" + p.SafeRegex.GetRegex() + ")$")
		if err != nil {
			return false, err
		}
		return re.MatchString(v), nil
	}
	return false, fmt.Errorf("string matcher %T is not evaluated", m.GetMatchPattern())
}

// templateMatches is Envoy's uri_template match: a path segment is
// [a-zA-Z0-9-._~%!$&'()+,;:@=]+; * matches one segment, ** any number of characters,
// slashes included (it ends the template).
func templateMatches(template, path string) bool {
	const segment = `[a-zA-Z0-9\-._~%!$&'()+,;:@=]`
	var re strings.Builder
	re.WriteString("^")
	for i, part := range strings.Split(template, "/") {
		if i > 0 {
			re.WriteString("/")
		}
		switch part {
		case "*":
			re.WriteString(segment + "+")
		case "**":
			re.WriteString("(?:" + segment + "|/)*")
		default:
			re.WriteString(regexp.QuoteMeta(part))
		}
	}
	re.WriteString("$")
	return regexp.MustCompile(re.String()).MatchString(path)
}

// cidrContains tells whether address v is in range c; no address is in none.
func cidrContains(c *corepb.CidrRange, v string) (bool, error) {
	addr, err := netip.ParseAddr(v)
	if err != nil {
		return false, nil
	}
	base, err := netip.ParseAddr(c.GetAddressPrefix())
	if err != nil {
		return false, err
	}
	prefix, err := base.Prefix(int(c.GetPrefixLen().GetValue()))
	if err != nil {
		return false, err
	}
	return prefix.Contains(addr), nil
}
