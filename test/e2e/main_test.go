// Package e2e drives meshguard the way users meet it: a real kube-apiserver and etcd, the
// real Istio CRDs, `meshguard serve` as its own process, and the real kubectl.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshguard/meshguard/certs"
)

// env is the control plane every test of the suite shares.
var env struct {
	kubeconfig string
	kube       *kubernetes.Clientset
	probe      string // meshguard's health endpoint
	log        *bytes.Buffer
}

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		code = 1
	}
	os.Exit(code)
}

// repoRoot is two folders up from this package.
func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..")
}

// controlPlaneBins returns the folder of kube-apiserver and etcd, built and cached by
// hack/control-plane-bins.sh unless KUBEBUILDER_ASSETS names one.
func controlPlaneBins() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cmd := exec.Command(filepath.Join(repoRoot(), "hack", "control-plane-bins.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building the control plane: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// istioCRDs is the CRD file shipped in the istio.io/api module meshguard builds against.
func istioCRDs() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api").Output()
	if err != nil {
		return "", fmt.Errorf("finding the istio.io/api module: %w", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "kubernetes", "customresourcedefinitions.gen.yaml"), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func run(m *testing.M) (int, error) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		return 1, fmt.Errorf("the end-to-end suite drives the real kubectl, and none is on PATH")
	}
	bins, err := controlPlaneBins()
	if err != nil {
		return 1, err
	}
	crds, err := istioCRDs()
	if err != nil {
		return 1, err
	}
	testEnv := &envtest.Environment{
		BinaryAssetsDirectory: bins,
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths:              []string{crds, filepath.Join(repoRoot(), "manifests", "crd")},
			ErrorIfPathMissing: true,
		},
	}
	cfg, err := testEnv.Start()
	if err != nil {
		return 1, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	defer func() { _ = testEnv.Stop() }()

	tmp, err := os.MkdirTemp("", "meshguard-e2e-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(tmp)
	admin, err := testEnv.AddUser(envtest.User{Name: "e2e-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return 1, err
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return 1, err
	}
	env.kubeconfig = filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(env.kubeconfig, kc, 0o600); err != nil {
		return 1, err
	}
	if env.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return 1, err
	}

	// meshguard, built and run as users run it.
	bin := filepath.Join(tmp, "meshguard")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(repoRoot(), "cmd", "meshguard")).CombinedOutput(); err != nil {
		return 1, fmt.Errorf("building meshguard: %v\n%s", err, out)
	}
	bundle, err := certs.SelfSigned([]string{"127.0.0.1"}, 24*time.Hour)
	if err != nil {
		return 1, err
	}
	certDir := filepath.Join(tmp, "certs")
	if err := bundle.Write(certDir); err != nil {
		return 1, err
	}
	port, err := freePort()
	if err != nil {
		return 1, err
	}
	probePort, err := freePort()
	if err != nil {
		return 1, err
	}
	env.probe = fmt.Sprintf("http://127.0.0.1:%d", probePort)
	env.log = &bytes.Buffer{}
	serve := exec.Command(bin, "serve", "--kubeconfig", env.kubeconfig, "--host", "127.0.0.1", "--port", fmt.Sprint(port),
		"--cert-dir", certDir, "--metrics-bind-address", "0", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probePort),
		"--istiod-version", "1.28.5")
	serve.Stdout, serve.Stderr = env.log, env.log
	if err := serve.Start(); err != nil {
		return 1, err
	}
	defer func() {
		_ = serve.Process.Signal(os.Interrupt)
		_, _ = serve.Process.Wait()
	}()
	if err := waitReady(60 * time.Second); err != nil {
		return 1, fmt.Errorf("%w\nmeshguard's log:\n%s", err, env.log)
	}
	if err := register(fmt.Sprintf("https://127.0.0.1:%d", port), bundle.CA); err != nil {
		return 1, err
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "meshguard's log:\n%s\n", env.log)
	}
	return code, nil
}

// waitReady polls meshguard's readiness: the certificate served and every cache synced.
func waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(env.probe + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("meshguard was not ready within %v", limit)
}

// register installs both webhook configurations, pointing at the local meshguard.
func register(url string, ca []byte) error {
	ctx := context.Background()
	fail, ignore := admregv1.Fail, admregv1.Ignore
	none := admregv1.SideEffectClassNone
	timeout := int32(5)
	ifNeeded := admregv1.IfNeededReinvocationPolicy
	validate, mutate := url+"/validate", url+"/mutate"
	notSystem := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "kube-node-lease", "meshguard-system"},
	}}}
	ops := []admregv1.OperationType{admregv1.Create, admregv1.Update, admregv1.Delete}
	rule := func(group string, ops []admregv1.OperationType, resources ...string) admregv1.RuleWithOperations {
		return admregv1.RuleWithOperations{Operations: ops, Rule: admregv1.Rule{APIGroups: []string{group}, APIVersions: []string{"*"}, Resources: resources}}
	}
	vwc := &admregv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "meshguard"},
		Webhooks: []admregv1.ValidatingWebhook{{
			Name:                    "security.meshguard.io",
			ClientConfig:            admregv1.WebhookClientConfig{URL: &validate, CABundle: ca},
			Rules:                   []admregv1.RuleWithOperations{rule("security.istio.io", ops, "requestauthentications", "authorizationpolicies", "peerauthentications")},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector:       notSystem,
		}, {
			Name:                    "guardrails.meshguard.io",
			ClientConfig:            admregv1.WebhookClientConfig{URL: &validate, CABundle: ca},
			Rules:                   []admregv1.RuleWithOperations{rule("meshguard.io", []admregv1.OperationType{admregv1.Create, admregv1.Update}, "meshguardrails")},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}, {
			Name:                    "pods.meshguard.io",
			ClientConfig:            admregv1.WebhookClientConfig{URL: &validate, CABundle: ca},
			Rules:                   []admregv1.RuleWithOperations{rule("", []admregv1.OperationType{admregv1.Create, admregv1.Update}, "pods")},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector:       notSystem,
		}},
	}
	mwc := &admregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "meshguard"},
		Webhooks: []admregv1.MutatingWebhook{{
			Name:                    "coverage.meshguard.io",
			ClientConfig:            admregv1.WebhookClientConfig{URL: &mutate, CABundle: ca},
			Rules:                   []admregv1.RuleWithOperations{rule("", []admregv1.OperationType{admregv1.Create}, "pods")},
			FailurePolicy:           &ignore,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector:       notSystem,
			ReinvocationPolicy:      &ifNeeded,
		}},
	}
	if _, err := env.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := env.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{})
	return err
}

// kubectl runs the real kubectl against the test API server, with manifest on stdin.
func kubectl(t *testing.T, manifest string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", env.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(manifest)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}
