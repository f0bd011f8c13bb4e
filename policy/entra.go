package policy

import (
	"net/url"
	"strings"
)

// Microsoft Entra ID (Azure AD) facts, from its token and metadata documentation: the seeds
// and most of our users' RequestAuthentications trust Entra.
const (
	entraV1IssuerHost = "sts.windows.net"
	entraLoginHost    = "login.microsoftonline.com"
	entraLegacyHost   = "login.windows.net"
)

// entraMultiTenant are the tenant segments whose key sets every tenant shares.
var entraMultiTenant = map[string]bool{"common": true, "organizations": true, "consumers": true}

// entraURL is an Entra issuer or key-set URL taken apart.
type entraURL struct {
	host   string
	tenant string // first path segment
	v2     bool   // a v2.0 issuer, or v2.0 key set
	raw    string
}

// parseEntra returns the Entra reading of an issuer or jwksUri, or false if it is not one.
func parseEntra(raw string) (entraURL, bool) {
	if !mayNameEntra(raw) {
		return entraURL{}, false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return entraURL{}, false
	}
	host := strings.ToLower(u.Hostname())
	if host != entraV1IssuerHost && host != entraLoginHost && host != entraLegacyHost {
		return entraURL{}, false
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	return entraURL{
		host:   host,
		tenant: strings.ToLower(segs[0]),
		v2:     strings.Contains(u.Path, "/v2.0"),
		raw:    raw,
	}, true
}

// mayNameEntra is a cheap first look: a URL whose host is Entra's spells the host out (in
// any case; url.Parse refuses escaped ASCII in a host). Rules ask it of every issuer and
// jwksUri, most of which are not Entra's.
func mayNameEntra(raw string) bool {
	l := strings.ToLower(raw)
	return strings.Contains(l, entraV1IssuerHost) || strings.Contains(l, entraLoginHost) || strings.Contains(l, entraLegacyHost)
}

// isV1Issuer tells whether an Entra issuer is of the v1 form https://sts.windows.net/{tid}/.
func (e entraURL) isV1Issuer() bool { return e.host == entraV1IssuerHost }

// urlHost returns the lower-case host of a URL, or "" when it has none.
func urlHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Hostname())
}
