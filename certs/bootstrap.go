package certs

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// caKeyField holds the CA's private key in the bootstrap's Secret, beside the serving pair.
const caKeyField = "ca.key"

// Bootstrap gives meshguard a serving certificate without cert-manager. The CA and the
// serving pair live in one Secret that every replica shares: the first creates it, the
// others adopt it. The serving certificate is re-issued under the same CA before it
// expires, so the caBundle in the webhook configurations never changes and no request
// fails during a rotation.
type Bootstrap struct {
	Client    kubernetes.Interface
	Namespace string
	Secret    string
	// Hosts the serving certificate covers: the Service's DNS names.
	Hosts []string
	// WebhookConfiguration names both the validating and the mutating configuration.
	WebhookConfiguration string
	CertDir              string
	CAValidity           time.Duration
	LeafValidity         time.Duration
	Log                  logr.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu sync.Mutex
	ca []byte // the CA Ensure last put in place
}

func (b *Bootstrap) now() time.Time {
	if b.Now == nil {
		return time.Now()
	}
	return b.Now()
}

// Ensure makes one round: the Secret exists and holds a current serving certificate, the
// files in CertDir match it, and both webhook configurations trust its CA. Replicas that
// start or rotate together conflict: the loser retries and adopts what the winner wrote.
func (b *Bootstrap) Ensure(ctx context.Context) error {
	var bundle *Bundle
	err := retry.OnError(retry.DefaultBackoff, apierrors.IsConflict, func() (err error) {
		bundle, err = b.ensureSecret(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("secret %s/%s: %w", b.Namespace, b.Secret, err)
	}
	if err := bundle.Write(b.CertDir); err != nil {
		return err
	}
	b.mu.Lock()
	b.ca = bundle.CA
	b.mu.Unlock()
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error { return b.injectCA(ctx, bundle.CA) })
}

// WatchWebhooks puts the CA back into the webhook configurations as soon as one loses it
// (a GitOps sync or a reinstall replaced it), rather than at the next round, until ctx
// ends: meanwhile the API server could not call meshguard, and every write of a security
// kind would be refused.
func (b *Bootstrap) WatchWebhooks(ctx context.Context) {
	adm := b.Client.AdmissionregistrationV1()
	byName := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", b.WebhookConfiguration).String()}
	for _, watchOne := range []func(context.Context, metav1.ListOptions) (watch.Interface, error){
		adm.ValidatingWebhookConfigurations().Watch, adm.MutatingWebhookConfigurations().Watch,
	} {
		go func() {
			for ctx.Err() == nil {
				w, err := watchOne(ctx, byName)
				if err != nil {
					b.Log.Error(err, "watching the webhook configurations; retrying")
					select {
					case <-ctx.Done():
					case <-time.After(10 * time.Second):
					}
					continue
				}
				for range w.ResultChan() {
					b.mu.Lock()
					ca := b.ca
					b.mu.Unlock()
					if err := retry.RetryOnConflict(retry.DefaultBackoff, func() error { return b.injectCA(ctx, ca) }); err != nil && ctx.Err() == nil {
						b.Log.Error(err, "putting the CA back into the webhook configurations")
					}
				}
				w.Stop()
			}
		}()
	}
}

// Run repeats Ensure every interval until ctx ends, logging failures.
func (b *Bootstrap) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := b.Ensure(ctx); err != nil {
				b.Log.Error(err, "self-signed certificate round failed; retrying")
			}
		}
	}
}

func (b *Bootstrap) ensureSecret(ctx context.Context) (*Bundle, error) {
	secrets := b.Client.CoreV1().Secrets(b.Namespace)
	s, err := secrets.Get(ctx, b.Secret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		created, createErr := b.createSecret(ctx)
		if createErr == nil {
			return created, nil
		}
		if !apierrors.IsAlreadyExists(createErr) {
			return nil, createErr
		}
		// Another replica was first: use its certificate.
		s, err = secrets.Get(ctx, b.Secret, metav1.GetOptions{})
	}
	if err != nil {
		return nil, err
	}
	bundle := &Bundle{CA: s.Data[CAFile], CAKey: s.Data[caKeyField], Cert: s.Data[corev1.TLSCertKey], Key: s.Data[corev1.TLSPrivateKeyKey]}
	why := bundle.NeedsReissue(b.Hosts, b.now())
	if why == "" {
		return bundle, nil
	}
	if err := bundle.Reissue(b.Hosts, b.LeafValidity, b.now()); err != nil {
		return nil, err
	}
	s.Data = bundleData(bundle)
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		// A conflict means another replica re-issued first; the next round adopts it.
		return nil, err
	}
	b.Log.Info("re-issued the serving certificate", "reason", why)
	return bundle, nil
}

// createSecret makes a CA and a serving certificate and stores them in a new Secret.
func (b *Bootstrap) createSecret(ctx context.Context) (*Bundle, error) {
	bundle, err := selfSigned(b.Hosts, b.CAValidity, b.LeafValidity, b.now())
	if err != nil {
		return nil, err
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: b.Secret, Namespace: b.Namespace}, Type: corev1.SecretTypeTLS, Data: bundleData(bundle)}
	if _, err := b.Client.CoreV1().Secrets(b.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	b.Log.Info("created a self-signed CA and serving certificate")
	return bundle, nil
}

func bundleData(b *Bundle) map[string][]byte {
	return map[string][]byte{CAFile: b.CA, caKeyField: b.CAKey, corev1.TLSCertKey: b.Cert, corev1.TLSPrivateKeyKey: b.Key}
}

// injectCA sets the caBundle of every webhook of both configurations, where it differs.
func (b *Bootstrap) injectCA(ctx context.Context, ca []byte) error {
	adm := b.Client.AdmissionregistrationV1()
	v, err := adm.ValidatingWebhookConfigurations().Get(ctx, b.WebhookConfiguration, metav1.GetOptions{})
	if err != nil {
		return err
	}
	var vc []*admregv1.WebhookClientConfig
	for i := range v.Webhooks {
		vc = append(vc, &v.Webhooks[i].ClientConfig)
	}
	if setCABundle(vc, ca) {
		if _, err := adm.ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	m, err := adm.MutatingWebhookConfigurations().Get(ctx, b.WebhookConfiguration, metav1.GetOptions{})
	if err != nil {
		return err
	}
	var mc []*admregv1.WebhookClientConfig
	for i := range m.Webhooks {
		mc = append(mc, &m.Webhooks[i].ClientConfig)
	}
	if setCABundle(mc, ca) {
		_, err = adm.MutatingWebhookConfigurations().Update(ctx, m, metav1.UpdateOptions{})
	}
	return err
}

// setCABundle sets ca on every client config, and tells whether any changed.
func setCABundle(configs []*admregv1.WebhookClientConfig, ca []byte) bool {
	changed := false
	for _, c := range configs {
		if !bytes.Equal(c.CABundle, ca) {
			c.CABundle, changed = ca, true
		}
	}
	return changed
}
