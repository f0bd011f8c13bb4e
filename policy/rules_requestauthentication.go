package policy

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/net/publicsuffix"
	"k8s.io/apimachinery/pkg/util/validation/field"

	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/meshguard/meshguard/api/v1alpha1"
	"github.com/meshguard/meshguard/policy/mesh"
)

type (
	jwtRule       = securityv1beta1.JWTRule
	trustedIssuer = v1alpha1.TrustedIssuer
)

// eachJWTRule adapts a check of one jwtRule to a RequestAuthentication check.
func eachJWTRule(check func(c *Context, r *jwtRule, at *field.Path) []Finding) func(*Context) []Finding {
	jwtRules := field.NewPath("spec", "jwtRules") // made once: a review judges many rules
	return judge(func(c *Context, ra *RequestAuthentication) []Finding {
		var out []Finding
		for i, r := range ra.Spec.JwtRules {
			out = append(out, check(c, r, jwtRules.Index(i))...)
		}
		return out
	})
}

// issuerName names a jwtRule's issuer in messages.
func issuerName(r *jwtRule) string {
	if r.Issuer == "" {
		return "with no issuer"
	}
	return fmt.Sprintf("for %q", r.Issuer)
}

func requestAuthenticationRules() []Rule {
	ra := []string{KindRequestAuthentication}
	return []Rule{{
		ID: "MG101", Name: "ra-missing-audiences", Default: Deny, Kinds: ra,
		Summary: "A jwtRule without `audiences`.",
		Why:     "Envoy then skips the `aud` check: any token from that issuer, minted for any app (an `az account get-access-token` management token), is accepted.",
		Check: eachJWTRule(func(c *Context, r *jwtRule, at *field.Path) []Finding {
			if len(r.Audiences) > 0 {
				return nil
			}
			example, fix := "", "list the audiences tokens for this API carry, e.g. audiences: [\"<the aud of this API's tokens>\"]"
			if _, entra := parseEntra(r.Issuer); entra {
				example = " (an Azure management token from `az account get-access-token`, say)"
				fix = "list the audiences tokens for this API carry, e.g. audiences: [\"api://<app-id>\", \"<app-client-id>\"]"
			}
			return []Finding{finding(at.Child("audiences"),
				fmt.Sprintf("jwtRule %s has no audiences, so Envoy skips the aud check: a token this issuer minted for any other app%s is accepted", issuerName(r), example),
				fix)}
		}),
	}, {
		ID: "MG102", Name: "ra-missing-issuer", Default: Deny, Kinds: ra,
		Summary: "A jwtRule without `issuer` (allowed since Istio 1.27).",
		Why:     "`iss` is not checked at all: any token signed by a key of the key set is accepted, whoever issued it.",
		Check: eachJWTRule(func(c *Context, r *jwtRule, at *field.Path) []Finding {
			if r.Issuer != "" {
				return nil
			}
			return []Finding{finding(at.Child("issuer"),
				fmt.Sprintf("jwtRule has no issuer, so the iss claim is not checked: any token signed by a key at %q is accepted, whoever issued it", r.JwksUri),
				"set issuer to the exact iss value of the tokens this API accepts")}
		}),
	}, {
		ID: "MG103", Name: "ra-jwks-insecure-uri", Default: Deny, Kinds: ra,
		Summary: "A key set istiod fetches over `http://`: the `jwksUri`, or without one the issuer's discovery document (`<issuer>/.well-known/openid-configuration`). Warn where the host is within the cluster (an in-cluster identity provider's Service, a private address).",
		Why:     "The key set is fetched in clear: whoever can intercept the fetch injects keys and mints tokens. Inside the cluster that takes a foothold on its network; outside it, anyone on the way.",
		Check: eachJWTRule(func(c *Context, r *jwtRule, at *field.Path) []Finding {
			raw, path := fetched(r, at)
			u, err := url.Parse(raw)
			if raw == "" || err != nil || !strings.EqualFold(u.Scheme, "http") {
				return nil
			}
			if _, inCluster := hostInside(u.Hostname()); inCluster {
				return []Finding{finding(path,
					fmt.Sprintf("istiod fetches %q over plain HTTP inside the cluster: whoever can intercept traffic there can inject a key and mint tokens that are accepted", raw),
					"serve the key set over https:// (or through the mesh's mTLS), or inline its keys in jwks").as(Warn)}
			}
			return []Finding{finding(path,
				fmt.Sprintf("istiod fetches %q over plain HTTP: whoever can intercept the fetch can inject a key and mint tokens that are accepted", raw),
				"serve the issuer's discovery document and key set over https://, and set jwksUri to the https:// key set")}
		}),
	}, {
		ID: "MG104", Name: "ra-jwks-multitenant", Default: Deny, Kinds: ra,
		Summary: "An Entra `common`, `organizations` or `consumers` key endpoint. Deny, or warn where the issuer pins one tenant.",
		Why:     "Those keys are shared by every Entra tenant: unless `issuer` pins one tenant, a token from any tenant is accepted.",
		Check: eachJWTRule(func(c *Context, r *jwtRule, at *field.Path) []Finding {
			keys, ok := parseEntra(r.JwksUri)
			if !ok || !entraMultiTenant[keys.tenant] {
				return nil
			}
			fix := "use the tenant's own key set, e.g. https://login.microsoftonline.com/<tenant-id>/discovery/v2.0/keys"
			if iss, ok := parseEntra(r.Issuer); ok && !entraMultiTenant[iss.tenant] {
				return []Finding{finding(at.Child("jwksUri"),
					fmt.Sprintf("jwksUri %q serves keys every Entra tenant shares; only the issuer pins tenant %q", r.JwksUri, iss.tenant), fix).as(Warn)}
			}
			return []Finding{finding(at.Child("jwksUri"),
				fmt.Sprintf("jwksUri %q serves keys every Entra tenant shares and the issuer pins no tenant: a token from any tenant is accepted", r.JwksUri),
				fix+", and set issuer to that tenant's issuer")}
		}),
	}, {
		ID: "MG105", Name: "ra-issuer-jwks-mismatch", Default: Warn, Kinds: ra,
		Summary: "The issuer's host or tenant differs from the `jwksUri` host or tenant (the published pairs of Entra v1/v2 and of Google sign-in, IAP and Firebase are known).",
		Why:     "Usually every request gets 401; a bypass when the key set belongs to someone who can mint tokens with that issuer.",
		Check: eachJWTRule(func(c *Context, r *jwtRule, at *field.Path) []Finding {
			if r.Issuer == "" || r.JwksUri == "" {
				return nil
			}
			iss, issEntra := parseEntra(r.Issuer)
			keys, keysEntra := parseEntra(r.JwksUri)
			if issEntra && keysEntra {
				if entraMultiTenant[keys.tenant] || iss.tenant == keys.tenant {
					return nil
				}
				return []Finding{finding(at.Child("jwksUri"),
					fmt.Sprintf("issuer is Entra tenant %q but the keys are tenant %q's: tokens fail with 401, or the other tenant can sign tokens this API accepts", iss.tenant, keys.tenant),
					"use the key set of the issuer's tenant")}
			}
			ih, kh := urlHost(r.Issuer), urlHost(r.JwksUri)
			if ih == "" || kh == "" || ih == kh || knownKeyHost[ih] == kh {
				return nil
			}
			return []Finding{finding(at.Child("jwksUri"),
				fmt.Sprintf("issuer host %q differs from key set host %q: tokens fail with 401, or the key set's owner can sign tokens this API accepts", ih, kh),
				"use the key set the issuer publishes (see its /.well-known/openid-configuration)")}
		}),
	}, {
		ID: "MG106", Name: "ra-jwks-private-key", Default: Deny, Kinds: ra,
		Summary: "An inline `jwks` key with `d`, `p`, `q`, `dp`, `dq`, `qi` or `oth`.",
		Why:     "The private key is readable by anyone who can read the resource or the proxy's config dump: they can mint tokens.",
		Check:   jwksCheck("MG106", "anyone who can read this resource or the proxy config can mint accepted tokens", "publish only the public key: drop d, p, q, dp, dq, qi and oth, and rotate the exposed key"),
	}, {
		ID: "MG107", Name: "ra-jwks-symmetric-key", Default: Deny, Kinds: ra,
		Summary: "An inline `jwks` key with `kty: oct`.",
		Why:     "A symmetric verification key is the signing key: anyone who can read it mints tokens.",
		Check:   jwksCheck("MG107", "the verification key is the signing key: anyone who can read it can mint accepted tokens", "sign tokens with an asymmetric key (RS256, ES256) and publish only its public key"),
	}, {
		ID: "MG108", Name: "ra-jwks-invalid", Default: Deny, Kinds: ra,
		Summary: "An inline `jwks` that does not parse, has no keys, an RSA key under 2048 bits, or an unknown `kty`/`alg`.",
		Why:     "Every request with a token gets 401, or tokens are verified with a weak key.",
		Check:   jwksCheck("MG108", "tokens get 401 or are checked against a weak key", "paste the issuer's public JWKS ({\"keys\": [...]}) with RSA keys of 2048 bits or more"),
	}, {
		ID: "MG109", Name: "ra-jwks-and-uri", Default: Deny, Kinds: ra,
		Summary: "Both `jwks` and `jwksUri`.",
		Why:     "Which key set wins depends on istiod settings: reviewers cannot know what is trusted.",
		Check: eachJWTRule(func(c *Context, r *jwtRule, at *field.Path) []Finding {
			if r.Jwks == "" || r.JwksUri == "" {
				return nil
			}
			return []Finding{finding(at.Child("jwks"),
				"jwtRule sets both jwks and jwksUri: which key set is trusted depends on istiod's PILOT_JWT_ENABLE_REMOTE_JWKS",
				"keep one: jwksUri for keys the issuer rotates, or jwks for a fixed key")}
		}),
	}, {
		ID: "MG110", Name: "ra-jwks-internal-address", Default: Deny, Kinds: ra,
		Summary: "A host istiod fetches keys from (the `jwksUri`, or without one the issuer's discovery document) that is loopback, link-local (169.254.169.254) or an internal name; warn for a cluster-internal name (`svc`, `svc.namespace`, `*.svc.cluster.local`) or a private IP, where an in-cluster identity provider (Keycloak, Dex) runs.",
		Why:     "istiod fetches it: server-side request forgery into the cluster or the cloud metadata service. An in-cluster identity provider is a common, legitimate setup; whoever can write RequestAuthentications can also point istiod at any Service of the cluster.",
		Check: eachJWTRule(func(c *Context, r *jwtRule, at *field.Path) []Finding {
			raw, path := fetched(r, at)
			host := urlHost(raw)
			why, inCluster := hostInside(host)
			if why == "" {
				return nil
			}
			if inCluster {
				return []Finding{finding(path,
					fmt.Sprintf("istiod fetches %q, whose host %q is %s: right for an identity provider running in the cluster, and a way to make istiod call any Service of it (SSRF)", raw, host, why),
					"if this is your in-cluster identity provider, a guardrail can set MG110 to off for its namespace; else use the issuer's public key set URL, or inline its keys in jwks").as(Warn)}
			}
			return []Finding{finding(path,
				fmt.Sprintf("istiod fetches %q, whose host %q is %s, from inside the cluster (SSRF)", raw, host, why),
				"use the issuer's public key set URL, or inline its public keys in jwks")}
		}),
	}, {
		ID: "MG111", Name: "ra-token-in-query", Default: Warn, Kinds: ra,
		Summary: "`fromParams` set.",
		Why:     "Tokens land in URLs, access logs and Referer headers, and are never stripped before the app.",
		Check: eachJWTRule(func(c *Context, r *jwtRule, at *field.Path) []Finding {
			if len(r.FromParams) == 0 {
				return nil
			}
			return []Finding{finding(at.Child("fromParams"),
				fmt.Sprintf("tokens read from query parameters %s land in URLs and logs and are never stripped", mesh.QuoteList(r.FromParams)),
				"send tokens in the Authorization header and drop fromParams")}
		}),
	}, {
		ID: "MG112", Name: "ra-token-in-cookie", Default: Warn, Kinds: ra,
		Summary: "`fromCookies` set.",
		Why:     "Browsers send cookies on cross-site requests (CSRF), and the cookie is never stripped before the app.",
		Check: eachJWTRule(func(c *Context, r *jwtRule, at *field.Path) []Finding {
			if len(r.FromCookies) == 0 {
				return nil
			}
			return []Finding{finding(at.Child("fromCookies"),
				fmt.Sprintf("tokens read from cookies %s ride along on cross-site requests (CSRF) and reach the app unstripped", mesh.QuoteList(r.FromCookies)),
				"send tokens in the Authorization header; if cookies must stay, set SameSite=Strict and check CSRF in the app")}
		}),
	}, {
		ID: "MG113", Name: "ra-header-prefix", Default: Warn, Kinds: ra,
		Summary: "`Authorization` configured without the `Bearer ` prefix, or a header prefix no token can follow.",
		Why:     "Every token is rejected, or the header is skipped and the request treated as carrying no token.",
		Check: eachJWTRule(func(c *Context, r *jwtRule, at *field.Path) []Finding {
			var out []Finding
			for i, h := range r.FromHeaders {
				path := at.Child("fromHeaders").Index(i).Child("prefix")
				switch {
				case strings.EqualFold(h.Name, "authorization") && h.Prefix != "Bearer ":
					out = append(out, finding(path,
						fmt.Sprintf("Authorization is read with prefix %q, not \"Bearer \": bearer tokens are rejected or the header is skipped as if no token were sent", h.Prefix),
						`set prefix: "Bearer " (with the space)`))
				case h.Prefix != "" && isTokenChar(h.Prefix[len(h.Prefix)-1]):
					out = append(out, finding(path,
						fmt.Sprintf("prefix %q ends in a token character: a value like %q yields an empty token and the header is skipped", h.Prefix, h.Prefix+" <token>"),
						fmt.Sprintf("end the prefix with its separator, e.g. %q", h.Prefix+" ")))
				}
			}
			return out
		}),
	}, {
		ID: "MG114", Name: "ra-custom-location", Default: Warn, Kinds: ra,
		Summary: "Custom token locations without `Authorization` among them.",
		Why:     "The default location is no longer verified: a bearer token in `Authorization` reaches the app unverified.",
		Check: judge(func(c *Context, ra *RequestAuthentication) []Finding {
			if slices.ContainsFunc(ra.Spec.JwtRules, readsAuthorization) {
				return nil
			}
			for i, r := range ra.Spec.JwtRules {
				if hasCustomLocation(r) {
					return []Finding{finding(field.NewPath("spec", "jwtRules").Index(i).Child("fromHeaders"),
						"no jwtRule reads the Authorization header: a bearer token sent there reaches the app unverified",
						`also read {name: Authorization, prefix: "Bearer "}, or make sure the app ignores Authorization`)}
				}
			}
			return nil
		}),
	}, {
		ID: "MG115", Name: "ra-output-header-reserved", Default: Deny, Kinds: ra,
		Summary: "`outputPayloadToHeader` or `outputClaimToHeaders` names `authorization`, `cookie`, `host`, `x-forwarded-*`, `x-envoy-*` or a `:` pseudo-header.",
		Why:     "Claims overwrite headers that routing and the app trust: header spoofing, or broken requests.",
		Check: eachJWTRule(func(c *Context, r *jwtRule, at *field.Path) []Finding {
			var out []Finding
			check := func(path *field.Path, header string) {
				if reservedHeader(header) {
					out = append(out, finding(path,
						fmt.Sprintf("token data is written to the reserved header %q, which routing, proxies or the app trust for something else", header),
						"use a header of your own, e.g. x-jwt-payload or x-jwt-claim-<name>"))
				}
			}
			check(at.Child("outputPayloadToHeader"), r.OutputPayloadToHeader)
			for i, h := range r.OutputClaimToHeaders {
				check(at.Child("outputClaimToHeaders").Index(i).Child("header"), h.Header)
			}
			return out
		}),
	}, {
		ID: "MG116", Name: "ra-issuer-format", Default: Warn, Kinds: ra,
		Summary: "An Entra issuer written in a form tokens never carry (v1 without trailing `/`, v2 with one), or a v1 issuer paired with the v2.0 key set.",
		Why:     "No token matches an issuer written so: every request with a token gets 401. With the v2.0 key set, a v1 issuer's tokens signed by an app's own keys fail with 401; the others pass.",
		Check: eachJWTRule(func(c *Context, r *jwtRule, at *field.Path) []Finding {
			iss, ok := parseEntra(r.Issuer)
			if !ok {
				return nil
			}
			bad := func(msg, fix string) []Finding {
				return []Finding{finding(at.Child("issuer"), msg+": every token gets 401 \"Jwt issuer is not configured\"", fix)}
			}
			v1 := fmt.Sprintf("https://sts.windows.net/%s/", iss.tenant)
			v2 := fmt.Sprintf("https://login.microsoftonline.com/%s/v2.0", iss.tenant)
			switch {
			case iss.isV1Issuer() && !strings.HasSuffix(r.Issuer, "/"):
				return bad("v1 Entra tokens carry iss with a trailing slash", fmt.Sprintf("issuer: %q", v1))
			case !iss.isV1Issuer() && iss.v2 && strings.HasSuffix(r.Issuer, "/"):
				return bad("v2 Entra tokens carry iss without a trailing slash", fmt.Sprintf("issuer: %q", v2))
			case !iss.isV1Issuer() && !iss.v2:
				return bad("no Entra token carries this iss", fmt.Sprintf("issuer: %q for v1 tokens, or %q for v2 tokens", v1, v2))
			}
			if keys, ok := parseEntra(r.JwksUri); ok && iss.isV1Issuer() && keys.v2 {
				return []Finding{finding(at.Child("jwksUri"),
					"the v1 issuer is paired with the v2.0 key set: apps with their own signing keys fail with 401",
					fmt.Sprintf("jwksUri: \"https://login.microsoftonline.com/%s/discovery/keys\", or issuer: %q if the API gets v2 tokens", iss.tenant, v2))}
			}
			return nil
		}),
	}, {
		ID: "MG117", Name: "ra-untrusted-issuer", Default: Deny, Kinds: ra,
		Summary: "An issuer not in the guardrail's `trustedIssuers`, or its key set or audiences outside what it allows (only where a guardrail sets them).",
		Why:     "Organisation policy: only the identity providers the organisation trusts may authenticate requests.",
		Check: eachJWTRule(func(c *Context, r *jwtRule, at *field.Path) []Finding {
			var out []Finding
			for _, list := range c.Settings.TrustedIssuers {
				i := slices.IndexFunc(list.Issuers, func(t trustedIssuer) bool { return t.Issuer == r.Issuer })
				who := guardrailNote([]string{list.Guardrail})
				if i < 0 {
					out = append(out, finding(at.Child("issuer"),
						fmt.Sprintf("issuer %q is not among the issuers %s trusts", r.Issuer, who),
						"use a trusted issuer, or ask the cluster admins to add this one to the guardrail"))
					continue
				}
				t := list.Issuers[i]
				if t.JwksURI != "" && r.JwksUri != t.JwksURI {
					out = append(out, finding(at.Child("jwksUri"),
						fmt.Sprintf("%s trusts issuer %q only with key set %q", who, r.Issuer, t.JwksURI),
						fmt.Sprintf("jwksUri: %q", t.JwksURI)))
				}
				if len(t.Audiences) == 0 {
					continue
				}
				if extra := slices.DeleteFunc(slices.Clone(r.Audiences), func(a string) bool { return slices.Contains(t.Audiences, a) }); len(extra) > 0 || len(r.Audiences) == 0 {
					out = append(out, finding(at.Child("audiences"),
						fmt.Sprintf("%s allows issuer %q only with audiences %s", who, r.Issuer, mesh.QuoteList(t.Audiences)),
						fmt.Sprintf("audiences: %s (or a subset)", mesh.QuoteList(t.Audiences))))
				}
			}
			return out
		}),
	}}
}

// knownKeyHost pairs issuer hosts with the hosts their publishers serve their keys from:
// Google sign-in, Identity-Aware Proxy (https://cloud.google.com/iap) and Firebase
// (https://securetoken.google.com/<project>).
var knownKeyHost = map[string]string{
	"accounts.google.com":    "www.googleapis.com",
	"cloud.google.com":       "www.gstatic.com",
	"securetoken.google.com": "www.googleapis.com",
}

// jwksCheck reports the problems inspectJWKS finds for one rule.
func jwksCheck(id, consequence, fix string) func(*Context) []Finding {
	return eachJWTRule(func(c *Context, r *jwtRule, at *field.Path) []Finding {
		if r.Jwks == "" {
			return nil
		}
		var out []Finding
		for _, p := range c.inspectJWKS(r.Jwks) {
			if p.rule != id {
				continue
			}
			where := "inline jwks"
			if p.field != "" {
				where += " " + p.field
			}
			out = append(out, finding(at.Child("jwks"), fmt.Sprintf("%s: %s; %s", where, p.msg, consequence), fix))
		}
		return out
	})
}

// isTokenChar tells whether b can be part of a JWT (base64url and the dots).
func isTokenChar(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.'
}

// readsAuthorization tells whether a jwtRule verifies tokens in the Authorization header:
// with no location set, Envoy reads Authorization: Bearer and the access_token parameter.
func readsAuthorization(r *jwtRule) bool {
	if !hasCustomLocation(r) {
		return true
	}
	return slices.ContainsFunc(r.FromHeaders, func(h *securityv1beta1.JWTHeader) bool {
		return strings.EqualFold(h.Name, "authorization")
	})
}

func hasCustomLocation(r *jwtRule) bool {
	return len(r.FromHeaders)+len(r.FromParams)+len(r.FromCookies) > 0
}

// reservedHeader tells whether a header carries meaning to routing, proxies or the app that
// a token claim must not overwrite.
func reservedHeader(h string) bool {
	h = strings.ToLower(strings.TrimSpace(h))
	switch {
	case h == "":
		return false
	case h == "authorization", h == "cookie", h == "host", h == "proxy-authorization":
		return true
	case strings.HasPrefix(h, ":"), strings.HasPrefix(h, "x-forwarded-"), strings.HasPrefix(h, "x-envoy-"):
		return true
	}
	return false
}

// hostInside says why a host is not a public one ("" where it is), and whether it is
// within the cluster: a Service's name or a private address, where an identity provider
// may run (Keycloak, Dex), rather than loopback, link-local or a metadata service.
func hostInside(host string) (why string, inCluster bool) {
	if host == "" {
		return "", false
	}
	if ip := net.ParseIP(host); ip != nil {
		switch {
		case ip.IsLoopback():
			return "a loopback address", false
		case ip.IsLinkLocalUnicast():
			return "link-local (the cloud metadata service lives there)", false
		case ip.IsUnspecified():
			return "the unspecified address", false
		case ip.IsPrivate():
			return "a private address", true
		}
		return "", false
	}
	switch {
	case host == "localhost" || strings.HasSuffix(host, ".localhost"):
		return "a loopback name", false
	case !strings.Contains(host, "."):
		return "a single-label name, resolved inside the cluster", true
	case strings.HasSuffix(host, ".svc") || strings.Contains(host, ".svc.") || strings.HasSuffix(host, ".cluster.local"):
		return "a cluster-internal service name", true
	case strings.HasSuffix(host, ".internal") || strings.HasSuffix(host, ".local"):
		return "an internal name", false
	}
	// A name of two labels under a top-level domain no registry serves (keycloak.auth:
	// service.namespace) resolves only through the cluster's DNS search path. Names under
	// the domains reserved for documentation and tests (RFC 2606, RFC 6761) stand for public
	// hosts, and longer names are no service.namespace.
	labels := strings.Split(host, ".")
	switch labels[len(labels)-1] {
	case "example", "test", "invalid":
		return "", false
	}
	if suffix, icann := publicsuffix.PublicSuffix(host); !icann && !strings.Contains(suffix, ".") && len(labels) == 2 {
		return "a name no public DNS serves (service.namespace), resolved inside the cluster", true
	}
	return "", false
}

// fetched is the URL istiod fetches for a jwtRule, and the field that makes it: the
// jwksUri, or without one (and no inline jwks) the issuer's OpenID discovery document,
// from which it then reads jwks_uri.
func fetched(r *jwtRule, at *field.Path) (rawURL string, path *field.Path) {
	switch {
	case r.JwksUri != "":
		return r.JwksUri, at.Child("jwksUri")
	case r.Jwks != "" || !strings.Contains(r.Issuer, "://"):
		return "", nil
	}
	return strings.TrimSuffix(r.Issuer, "/") + "/.well-known/openid-configuration", at.Child("issuer")
}
