package policy

import (
	"fmt"
	"strconv"
	"strings"
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

// leaksFallbackKey tells whether an istiod version falls back, on a failed JWKS fetch, to a
// key set whose private key ships in Istio's source: 1.21.0–1.27.7, 1.28.0–1.28.4, 1.29.0.
func leaksFallbackKey(v string) bool {
	major, minor, patch, ok := parseVersion(v)
	if !ok || major != 1 {
		return false
	}
	switch {
	case minor >= 21 && minor <= 26:
		return true
	case minor == 27:
		return patch <= 7
	case minor == 28:
		return patch <= 4
	case minor == 29:
		return patch == 0
	}
	return false
}

func controlPlaneRules() []Rule {
	return []Rule{{
		ID: "MG701", Name: "istio-version-jwks-fallback", Default: Warn, Kinds: []string{KindRequestAuthentication},
		Summary: "istiod 1.21.0–1.27.7, 1.28.0–1.28.4 or 1.29.0 while RequestAuthentications exist.",
		Why:     "When a JWKS fetch fails, these versions fall back to a key set whose private key is public: anyone can mint accepted tokens.",
		Check: func(c *Context) []Finding {
			for _, v := range c.State.IstiodVersions() {
				if leaksFallbackKey(v) {
					return []Finding{finding("spec.jwtRules",
						fmt.Sprintf("istiod %s falls back to a key set with a public private key when a JWKS fetch fails: anyone can then mint accepted tokens", v),
						"upgrade istiod to 1.27.8, 1.28.5, 1.29.1, 1.30.0 or later")}
				}
			}
			return nil
		},
	}}
}
