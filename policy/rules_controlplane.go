package policy

import (
	"fmt"
	"strconv"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
)

// parseVersion reads major.minor.patch from an Istio version or image tag ("1.24.2",
// "v1.24.2", "1.24.2-distroless").
func parseVersion(v string) (major, minor, patch int, ok bool) {
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+_"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	var n [3]int
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil {
			return 0, 0, 0, false
		}
		n[i] = x
	}
	return n[0], n[1], n[2], true
}

// affected is a set of Istio 1.x releases, by minor and patch.
type affected func(minor, patch int) bool

// has tells whether an istiod version (an image tag) is among the releases.
func (a affected) has(v string) bool {
	major, minor, patch, ok := parseVersion(v)
	return ok && major == 1 && a(minor, patch)
}

// affectedIstiod returns the first istiod version of the state among the releases, or "".
func affectedIstiod(c *Context, releases affected) string {
	for _, v := range c.State.IstiodVersions() {
		if releases.has(v) {
			return v
		}
	}
	return ""
}

// upTo returns the releases of each minor up to a patch: upTo(27, 7, 28, 4) is 1.27.0–1.27.7
// and 1.28.0–1.28.4.
func upTo(minorPatch ...int) affected {
	return func(minor, patch int) bool {
		for i := 0; i+1 < len(minorPatch); i += 2 {
			if minor == minorPatch[i] && patch <= minorPatch[i+1] {
				return true
			}
		}
		return false
	}
}

// Releases a security bulletin names (ISTIO-SECURITY-2026-001, -003, and the note of
// 1.28.7/1.29.3).
var (
	// CVE-2026-26308: the RBAC header matcher joins repeated headers.
	headerMatchJoined = upTo(27, 7, 28, 4, 29, 0)
	// CVE-2026-39350: a service account's "." is a regex wildcard, from 1.25.
	serviceAccountRegex = affected(func(minor, patch int) bool {
		return minor == 25 || minor == 26 || upTo(27, 8, 28, 5, 29, 1)(minor, patch)
	})
	// A principal's suffix match, and namespaces, with unescaped regex metacharacters.
	principalRegex = affected(func(minor, patch int) bool {
		return minor < 28 || upTo(28, 6, 29, 2)(minor, patch)
	})
	// targetRefs naming a GatewayClass attach to waypoints from 1.26 only.
	noGatewayClassRefs = affected(func(minor, _ int) bool { return minor < 26 })
)

// fallbackKeyLeak are the istiod versions that fall back, on a failed JWKS fetch, to a key
// set whose private key ships in Istio's source: 1.21.0–1.27.7, 1.28.0–1.28.4, 1.29.0
// (CVE-2026-31837).
var fallbackKeyLeak = affected(func(minor, patch int) bool {
	return minor >= 21 && minor <= 26 || upTo(27, 7, 28, 4, 29, 0)(minor, patch)
})

// regexMeta are the characters a regular expression reads as more than themselves.
const regexMeta = `.+?()[]{}|^$\`

func controlPlaneRules() []Rule {
	ap := []string{KindAuthorizationPolicy}
	return []Rule{{
		ID: "MG701", Name: "istio-version-jwks-fallback", Default: Warn, Kinds: []string{KindRequestAuthentication},
		Summary: "istiod 1.21.0–1.27.7, 1.28.0–1.28.4 or 1.29.0 while RequestAuthentications exist.",
		Why:     "When a JWKS fetch fails, these versions fall back to a key set whose private key is public: anyone can mint accepted tokens.",
		Check: func(c *Context) []Finding {
			v := affectedIstiod(c, fallbackKeyLeak)
			if v == "" {
				return nil
			}
			return []Finding{finding(field.NewPath("spec", "jwtRules"),
				fmt.Sprintf("istiod %s falls back to a key set with a public private key when a JWKS fetch fails: anyone can then mint accepted tokens", v),
				"upgrade istiod to 1.27.8, 1.28.5, 1.29.1, 1.30.0 or later")}
		},
	}, {
		ID: "MG702", Name: "istio-version-header-match", Default: Warn, Kinds: ap,
		Summary: "An AuthorizationPolicy matching `request.headers[...]` on istiod 1.27.0–1.27.7, 1.28.0–1.28.4 or 1.29.0 (CVE-2026-26308).",
		Why:     "Envoy matches a repeated header as its values joined: a request sending the header twice evades a DENY on it, or satisfies an ALLOW.",
		Check: eachAPRule(allowOrDeny, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			v := affectedIstiod(c, headerMatchJoined)
			if v == "" {
				return nil
			}
			var out []Finding
			for k, w := range r.When {
				if strings.HasPrefix(w.Key, "request.headers[") {
					out = append(out, finding(at.Child("when").Index(k).Child("key"),
						fmt.Sprintf("istiod %s matches a repeated %s as its values joined: sending it twice evades a DENY on it and can satisfy an ALLOW", v, w.Key),
						"upgrade istiod to 1.27.8, 1.28.5, 1.29.1, 1.30.0 or later"))
				}
			}
			return out
		}),
	}, {
		ID: "MG703", Name: "istio-version-sa-regex", Default: Deny, Kinds: ap,
		Summary: "`serviceAccounts` or `notServiceAccounts` holding a `.` on istiod 1.25.0–1.27.8, 1.28.0–1.28.5 or 1.29.0–1.29.1 (CVE-2026-39350). Deny for a DENY, warn for an ALLOW.",
		Why:     "The `.` is read as a regex wildcard: an ALLOW admits other service accounts, a DENY's exceptions let others through.",
		Check: eachAPRule(allowOrDeny, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			v := affectedIstiod(c, serviceAccountRegex)
			if v == "" {
				return nil
			}
			return regexFindings(p, r, at, v, func(s *securityv1beta1.Source) (string, []string, []string) {
				return "serviceAccounts", s.ServiceAccounts, s.NotServiceAccounts
			}, ".", "upgrade istiod to 1.27.9, 1.28.6, 1.29.2, 1.30.0 or later")
		}),
	}, {
		ID: "MG704", Name: "istio-version-principal-regex", Default: Deny, Kinds: ap,
		Summary: "`principals` with a leading `*`, or `namespaces`, holding regex metacharacters on istiod before 1.28.7 or 1.29.0–1.29.2. Deny for a DENY, warn for an ALLOW.",
		Why:     "They are not escaped: the match is wider than written, so an ALLOW admits others and a DENY's exceptions let others through.",
		Check: eachAPRule(allowOrDeny, func(c *Context, p *AuthorizationPolicy, r *apRule, at *field.Path) []Finding {
			v := affectedIstiod(c, principalRegex)
			if v == "" {
				return nil
			}
			fix := "upgrade istiod to 1.28.7, 1.29.3, 1.30.0 or later"
			suffixes := func(vals []string) []string {
				var out []string
				for _, x := range vals {
					if strings.HasPrefix(x, "*") {
						out = append(out, x)
					}
				}
				return out
			}
			return append(
				regexFindings(p, r, at, v, func(s *securityv1beta1.Source) (string, []string, []string) {
					return "principals", suffixes(s.Principals), suffixes(s.NotPrincipals)
				}, regexMeta, fix),
				regexFindings(p, r, at, v, func(s *securityv1beta1.Source) (string, []string, []string) {
					return "namespaces", s.Namespaces, s.NotNamespaces
				}, regexMeta, fix)...)
		}),
	}, {
		ID: "MG706", Name: "istio-version-gatewayclass-ref", Default: Deny, Kinds: []string{KindRequestAuthentication, KindAuthorizationPolicy},
		Summary: "`targetRefs` naming a GatewayClass on istiod before 1.26.",
		Why:     "Those versions attach policies to no GatewayClass: the policy is stored and enforced nowhere.",
		Check: func(c *Context) []Finding {
			v := affectedIstiod(c, noGatewayClassRefs)
			if v == "" {
				return nil
			}
			var out []Finding
			for i, r := range mesh.ScopeOf(c.Object).TargetRefs {
				if r.Kind == KindGatewayClass {
					out = append(out, finding(field.NewPath("spec", "targetRefs").Index(i),
						fmt.Sprintf("istiod %s attaches no policy to GatewayClass %q: this policy is enforced nowhere", v, r.Name),
						"upgrade istiod to 1.26 or later, or target the waypoint Gateway itself"))
				}
			}
			return out
		},
	}}
}

// regexFindings reports the values of a source field holding any of meta, which the
// affected istiod reads as a regular expression: deny for a DENY, warn for an ALLOW.
func regexFindings(p *AuthorizationPolicy, r *apRule, at *field.Path, version string, field func(*securityv1beta1.Source) (name string, positive, negative []string), meta, fix string) []Finding {
	var out []Finding
	for j, f := range r.From {
		if f.Source == nil {
			continue
		}
		name, positive, negative := field(f.Source)
		for _, form := range []struct {
			name   string
			values []string
		}{{name, positive}, {"not" + strings.ToUpper(name[:1]) + name[1:], negative}} {
			for _, v := range form.values {
				if !strings.ContainsAny(v, meta) {
					continue
				}
				fd := finding(at.Child("from").Index(j).Child("source", form.name),
					fmt.Sprintf("istiod %s reads %q as a regular expression: it matches more than written", version, v), fix)
				if dataplane.IsAllow(p) {
					fd = fd.as(Warn)
				}
				out = append(out, fd)
				break
			}
		}
	}
	return out
}
