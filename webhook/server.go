package webhook

import (
	"crypto/tls"
	"path/filepath"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/meshguard/meshguard/certs"
	"github.com/meshguard/meshguard/kinds"
)

// NewHTTPSServer is the server meshguard's webhooks run on: TLS 1.2 or later, HTTP/1.1 only,
// the certificate and key (tls.crt, tls.key in certDir) reloaded when they change. With a
// clientCAFile, a client must present a certificate it issued (the API server's) or the
// replicas' own (verifyClient).
func NewHTTPSServer(host string, port int, certDir, clientCAFile string) ctrlwebhook.Server {
	return ctrlwebhook.NewServer(ctrlwebhook.Options{
		Host:    host,
		Port:    port,
		CertDir: certDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS12
			// TLS 1.2 with forward secrecy and AEAD only; TLS 1.3's suites are all so.
			c.CipherSuites = []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
				tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
				tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
			}
			// HTTP/2 stays off: its Rapid Reset attacks (CVE-2023-44487, CVE-2023-39325).
			c.NextProtos = []string{"http/1.1"}
			if clientCAFile != "" {
				c.ClientAuth = tls.RequireAnyClientCert
				c.VerifyPeerCertificate = verifyClient(clientCAFile, filepath.Join(certDir, certs.CertFile))
			}
		}},
	})
}

// Register serves the validating and mutating handlers on ws, under s.Limits (the
// defaults when unset).
func (s *Server) Register(ws ctrlwebhook.Server) {
	l := newLimiter(s.limits(), s.Metrics)
	ws.Register(ValidatePath, l.wrap(reviews{handler: s.Validating(), log: s.Log.WithName("validate")}))
	ws.Register(MutatePath, l.wrap(reviews{handler: s.Mutating(), log: s.Log.WithName("mutate")}))
}

// CacheOptions say what the informer cache keeps of each kind (kinds.Kind.Keep): no
// managed fields, only the annotations the rules read, and of Pods only their metadata.
// One transform serves every kind, so that kinds the cluster does not serve need no entry.
func CacheOptions() cache.Options {
	return cache.Options{DefaultTransform: func(obj any) (any, error) {
		if m, ok := obj.(metav1.Object); ok {
			if k := kinds.OfCached(obj); k != nil {
				k.Keep(m)
			} else {
				m.SetManagedFields(nil)
			}
		}
		return obj, nil
	}}
}
