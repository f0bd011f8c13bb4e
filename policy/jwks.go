package policy

import (
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
)

// jwksProblem is one thing wrong with an inline JWKS.
type jwksProblem struct {
	rule  string // MG106, MG107 or MG108
	field string // path inside the key set, e.g. keys[0].d
	msg   string
}

// privateMembers are the JWK members that only a private key has (RFC 7518 §6.3.2, §6.2.2).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth"}

// signingAlgs are the JWS algorithms Envoy's jwt_authn verifies.
var signingAlgs = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "HS256", "HS384", "HS512", "EdDSA",
}

// minRSABits is the smallest RSA modulus meshguard accepts (NIST SP 800-131A).
const minRSABits = 2048

// maxJWKSKeys bounds the keys of an inline JWKS meshguard inspects: each costs a parse,
// and a private RSA key's check, milliseconds.
const maxJWKSKeys = 64

// inspectJWKS reads an inline JWKS, as Istio does (a key set, or one key), and lists what is
// unsafe or broken in it.
func inspectJWKS(text string) []jwksProblem {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal([]byte(text), &set); err != nil {
		return []jwksProblem{{rule: "MG108", msg: "does not parse as JSON: " + err.Error()}}
	}
	prefix := "keys"
	if set.Keys == nil {
		var single map[string]json.RawMessage
		if json.Unmarshal([]byte(text), &single) == nil && single["kty"] != nil {
			set.Keys, prefix = []json.RawMessage{json.RawMessage(text)}, ""
		}
	}
	switch {
	case len(set.Keys) == 0:
		return []jwksProblem{{rule: "MG108", msg: "holds no keys"}}
	case len(set.Keys) > maxJWKSKeys:
		return []jwksProblem{{rule: "MG108", field: "keys", msg: fmt.Sprintf("holds %d keys, more than the %d meshguard inspects (an identity provider publishes a handful)", len(set.Keys), maxJWKSKeys)}}
	}
	var out []jwksProblem
	for i, raw := range set.Keys {
		at := fmt.Sprintf("%s[%d]", prefix, i)
		if prefix == "" {
			at = ""
		}
		out = append(out, inspectJWK(raw, at)...)
	}
	return out
}

func inspectJWK(raw json.RawMessage, at string) []jwksProblem {
	member := func(name string) string {
		if at == "" {
			return name
		}
		return at + "." + name
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return []jwksProblem{{rule: "MG108", field: at, msg: "key is not a JSON object"}}
	}
	var out []jwksProblem
	for _, m := range privateMembers {
		if _, ok := members[m]; ok {
			out = append(out, jwksProblem{rule: "MG106", field: member(m), msg: fmt.Sprintf("key has the private member %q", m)})
		}
	}
	var kty, alg string
	_ = json.Unmarshal(members["kty"], &kty)
	_ = json.Unmarshal(members["alg"], &alg)
	if kty == "oct" {
		out = append(out, jwksProblem{rule: "MG107", field: member("kty"), msg: `key is symmetric (kty "oct")`})
	}
	if alg != "" && !slices.Contains(signingAlgs, alg) {
		out = append(out, jwksProblem{rule: "MG108", field: member("alg"), msg: fmt.Sprintf("alg %q is not a signing algorithm Envoy verifies", alg)})
	}
	var key jose.JSONWebKey
	if err := key.UnmarshalJSON(raw); err != nil {
		return append(out, jwksProblem{rule: "MG108", field: at, msg: "key does not parse: " + err.Error()})
	}
	var n int
	switch k := key.Key.(type) {
	case *rsa.PublicKey:
		n = k.N.BitLen()
	case *rsa.PrivateKey:
		n = k.N.BitLen()
	}
	if n > 0 && n < minRSABits {
		out = append(out, jwksProblem{rule: "MG108", field: member("n"), msg: fmt.Sprintf("RSA key of %d bits, under %d", n, minRSABits)})
	}
	return out
}
