// Package cluster runs a local control plane with meshguard enforcing: a real kube-apiserver
// and etcd (built from the Go module proxy and cached), the Istio CRDs of the istio.io/api
// module, meshguard's CRD, `meshguard serve` with a self-signed certificate, and both webhook
// configurations. `make run` and the end-to-end suite use it.
package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/meshguard/meshguard/certs"
)

// Options say where the cluster keeps its files.
type Options struct {
	// Root is the meshguard repository.
	Root string
	// Dir holds the kubeconfig, certificates and the meshguard binary.
	Dir string
	// Log receives meshguard's log; nil keeps it in memory (see Log).
	Log *os.File
	// CRDs are installed beside the Istio CRDs and meshguard's.
	CRDs []string
	// APIServerArgs are set on kube-apiserver's command line.
	APIServerArgs map[string]string
	// ServeArgs are added to meshguard serve's command line.
	ServeArgs []string
}

// Cluster is a running local control plane with meshguard registered.
type Cluster struct {
	Kubeconfig string
	// Binary is the meshguard binary the cluster runs.
	Binary string
	Config *rest.Config
	Kube   *kubernetes.Clientset
	// WebhookURL is where `meshguard serve` listens, with a certificate of CA.
	WebhookURL string
	CA         []byte

	env *envtest.Environment
	// clientDir holds the client certificate the API server presents to webhooks, and its CA.
	clientDir string
	root      string
	certDir   string
	// primary is the meshguard the webhooks are registered with.
	primary *Replica
	log     *LogBuffer
	logFile *os.File
}

// Replica is one `meshguard serve` process of the cluster.
type Replica struct {
	// URL is where it serves its webhooks.
	URL   string
	args  []string
	probe string
	cmd   *exec.Cmd
	out   io.Writer
}

// LogBuffer is a bytes.Buffer a child process can write while tests read it.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *LogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *LogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Log returns what meshguard has logged, when Options.Log was nil.
func (c *Cluster) Log() string {
	if c.log == nil {
		return ""
	}
	return c.log.String()
}

// Start brings the cluster up with meshguard serving and registered. On error, whatever was
// started is stopped again. ctx cancelled mid-start stops it too.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	c, err := StartControlPlane(ctx, o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if err := c.Build(ctx, o); err != nil {
		return nil, err
	}
	port, ca, err := c.startMeshguard(ctx, o)
	if err != nil {
		return nil, err
	}
	c.WebhookURL, c.CA = fmt.Sprintf("https://127.0.0.1:%d", port), ca
	if err := register(ctx, c.Kube, o.Root, c.WebhookURL, ca); err != nil {
		return nil, fmt.Errorf("registering the webhooks: %w", err)
	}
	return c, nil
}

// StartControlPlane starts kube-apiserver and etcd with the CRDs and an admin kubeconfig,
// without meshguard.
func StartControlPlane(ctx context.Context, o Options) (_ *Cluster, err error) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		return nil, errors.New("kubectl is not on PATH: install it to drive the local cluster")
	}
	// c, not the named result, is what gets stopped: `return nil, err` clears the result
	// before deferred functions run.
	c := &Cluster{}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	bins, err := controlPlaneBins(o.Root)
	if err != nil {
		return nil, err
	}
	crds, err := istioCRDs()
	if err != nil {
		return nil, err
	}
	gatewayCRDs, err := moduleDir("sigs.k8s.io/gateway-api")
	if err != nil {
		return nil, err
	}
	// The Reports meshguard's audit writes.
	reportsCRDs, err := moduleDir("github.com/openreports/reports-api")
	if err != nil {
		return nil, err
	}
	c.env = &envtest.Environment{
		BinaryAssetsDirectory: bins,
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths: append([]string{crds, filepath.Join(gatewayCRDs, "config", "crd", "standard"), filepath.Join(reportsCRDs, "config", "crd"),
				filepath.Join(o.Root, "manifests", "crd")}, o.CRDs...),
			ErrorIfPathMissing: true,
		},
	}
	// A folder of its own keeps the API server's serving certificate across a restart
	// (KillAPIServer, StartAPIServer); envtest would make a new one.
	apiserver := c.env.ControlPlane.GetAPIServer()
	apiserver.CertDir = filepath.Join(o.Dir, "kube-apiserver")
	if err := os.MkdirAll(apiserver.CertDir, 0o700); err != nil {
		return nil, err
	}
	args := apiserver.Configure()
	// The API server presents a client certificate to the webhooks, which meshguard
	// requires (serve --client-ca-file): only the API server posts reviews.
	admission, err := apiServerClient(filepath.Join(o.Dir, "apiserver-client"))
	if err != nil {
		return nil, err
	}
	c.clientDir = filepath.Dir(admission)
	args.Set("admission-control-config-file", admission)
	for name, value := range o.APIServerArgs {
		args.Set(name, value)
	}
	cfg, err := c.env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	admin, err := c.env.AddUser(envtest.User{Name: "meshguard-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(o.Dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	c.Config = cfg
	if c.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	return c, nil
}

// Build builds the meshguard binary into the cluster's folder.
func (c *Cluster) Build(ctx context.Context, o Options) error {
	c.Binary = filepath.Join(o.Dir, "meshguard")
	build := exec.CommandContext(ctx, "go", "build", "-o", c.Binary, "./cmd/meshguard")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as released: see the Makefile
	build.Dir = o.Root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building meshguard: %v\n%s", err, out)
	}
	return nil
}

// startMeshguard gives meshguard a self-signed certificate for 127.0.0.1, runs
// `meshguard serve` and waits until it is ready.
func (c *Cluster) startMeshguard(ctx context.Context, o Options) (port int, ca []byte, err error) {
	bundle, err := certs.SelfSigned([]string{"127.0.0.1"}, 24*time.Hour)
	if err != nil {
		return 0, nil, err
	}
	c.root, c.certDir = o.Root, filepath.Join(o.Dir, "certs")
	if err := bundle.Write(c.certDir); err != nil {
		return 0, nil, err
	}
	c.logFile = o.Log
	if o.Log == nil {
		c.log = &LogBuffer{}
	}
	if c.primary, err = c.newReplica(o.ServeArgs); err != nil {
		return 0, nil, err
	}
	if err := c.RestartMeshguard(ctx); err != nil {
		return 0, nil, err
	}
	port, _ = strconv.Atoi(c.primary.URL[strings.LastIndex(c.primary.URL, ":")+1:])
	return port, bundle.CA, nil
}

// newReplica makes a `meshguard serve` of ports of its own, with the cluster's certificate
// and log, and these arguments besides.
func (c *Cluster) newReplica(serveArgs []string) (*Replica, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	probePort, err := FreePort()
	if err != nil {
		return nil, err
	}
	r := &Replica{URL: fmt.Sprintf("https://127.0.0.1:%d", port), probe: fmt.Sprintf("http://127.0.0.1:%d", probePort), out: c.log}
	if c.logFile != nil {
		r.out = c.logFile
	}
	r.args = append([]string{"serve", "--kubeconfig", c.Kubeconfig, "--host", "127.0.0.1", "--port", fmt.Sprint(port),
		"--cert-dir", c.certDir, "--client-ca-file", filepath.Join(c.clientDir, certs.CAFile), "--metrics-bind-address", "0", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probePort),
		"--istiod-version", "1.28.5", "--namespace", "default", "--peer-address", r.URL},
		serveArgs...) // the audit's and the judge's Leases in default
	return r, nil
}

// StartReplica runs another `meshguard serve` beside the first, as a second Pod of the
// Deployment: its own ports, the same certificate, no Options.ServeArgs (they may name
// ports); the webhooks stay registered with the first (see Balancer). It is ready when it
// returns.
func (c *Cluster) StartReplica(ctx context.Context) (*Replica, error) {
	r, err := c.newReplica(nil)
	if err != nil {
		return nil, err
	}
	if err := c.start(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Primary is the meshguard the webhooks were registered with.
func (c *Cluster) Primary() *Replica { return c.primary }

// MeshguardPID is the process ID of `meshguard serve`.
func (c *Cluster) MeshguardPID() int { return c.primary.cmd.Process.Pid }

// KillMeshguard kills `meshguard serve` at once, as an OOM kill or a lost node would,
// leaving the webhooks registered.
func (c *Cluster) KillMeshguard() error { return c.primary.Kill() }

// RestartMeshguard starts `meshguard serve` again, on the same port and certificate, and
// waits until it is ready.
func (c *Cluster) RestartMeshguard(ctx context.Context) error { return c.start(ctx, c.primary) }

func (c *Cluster) start(ctx context.Context, r *Replica) error {
	r.cmd = exec.Command(c.Binary, r.args...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		return err
	}
	if err := r.waitReady(ctx, 60*time.Second); err != nil {
		return fmt.Errorf("%w\nmeshguard's log:\n%s", err, c.Log())
	}
	return c.waitJudge(ctx)
}

// waitJudge waits until a replica holds the Lease meshguard-judge, and for its first
// second, in which it refuses the writes that may open a workload (retry).
func (c *Cluster) waitJudge(ctx context.Context) error {
	for {
		lease, err := c.Kube.CoordinationV1().Leases("default").Get(ctx, "meshguard-judge", metav1.GetOptions{})
		if err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "" {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(1200 * time.Millisecond):
		return nil
	}
}

// Kill kills the replica at once.
func (r *Replica) Kill() error {
	if err := r.cmd.Process.Kill(); err != nil {
		return err
	}
	_, err := r.cmd.Process.Wait()
	if errors.Is(err, os.ErrProcessDone) {
		err = nil
	}
	return err
}

// Stop stops the replica as Kubernetes does (SIGTERM: it turns unready and finishes the
// reviews in flight), killing it after 10 s.
func (r *Replica) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _, _ = r.cmd.Process.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
}

// Ready tells whether the replica reports ready.
func (r *Replica) Ready() bool {
	resp, err := http.Get(r.probe + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// KillAPIServer kills kube-apiserver at once, as a crash would, leaving etcd and
// meshguard running.
func (c *Cluster) KillAPIServer() error {
	// The process is the one whose command line names the API server's own folder.
	dir := c.env.ControlPlane.APIServer.CertDir
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		return err
	}
	for _, p := range procs {
		cmdline, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(cmdline, []byte("kube-apiserver")) || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			return err
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return err
		}
		return c.env.ControlPlane.APIServer.Stop() // reaps it
	}
	return fmt.Errorf("no kube-apiserver process serves from %s", dir)
}

// StartAPIServer starts kube-apiserver again, on the same address and certificates, and
// waits until it serves.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if err := c.env.ControlPlane.APIServer.Start(); err != nil {
		return err
	}
	for {
		if _, err := c.Kube.Discovery().ServerVersion(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Ready tells whether meshguard reports ready.
func (c *Cluster) Ready() bool { return c.primary.Ready() }

// Stop stops meshguard, kube-apiserver and etcd.
func (c *Cluster) Stop() {
	if c.primary != nil {
		c.primary.Stop()
	}
	if c.env != nil {
		_ = c.env.Stop()
	}
}

// PointWebhooks registers the webhook configurations anew, at url (meshguard's
// certificate), as `make run` registered them at the primary's.
func (c *Cluster) PointWebhooks(ctx context.Context, url string) error {
	hooks := c.Kube.AdmissionregistrationV1()
	if err := hooks.ValidatingWebhookConfigurations().Delete(ctx, "meshguard", metav1.DeleteOptions{}); err != nil {
		return err
	}
	if err := hooks.MutatingWebhookConfigurations().Delete(ctx, "meshguard", metav1.DeleteOptions{}); err != nil {
		return err
	}
	return register(ctx, c.Kube, c.root, url, c.CA)
}

// APIServerClient is the client certificate the API server presents to webhooks, for
// tests that post reviews as it does.
func (c *Cluster) APIServerClient() (tls.Certificate, error) {
	return tls.LoadX509KeyPair(filepath.Join(c.clientDir, certs.CertFile), filepath.Join(c.clientDir, certs.KeyFile))
}

// UseAPIServerClient has the API server present this client certificate and key (PEM) to
// webhooks from its next start on (StartAPIServer), as an admin installs one on a control
// plane.
func (c *Cluster) UseAPIServerClient(cert, key []byte) error {
	if err := os.WriteFile(filepath.Join(c.clientDir, certs.KeyFile), key, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.clientDir, certs.CertFile), cert, 0o600)
}

// apiServerClient writes into dir a client certificate for the API server to present to
// webhooks, its CA, and the AdmissionConfiguration that has it do so; it returns the
// configuration's path. The kubeconfig's user "*" serves every webhook: only meshguard's
// are registered here. In a cluster, name meshguard's Service instead
// (meshguard.meshguard-system.svc:443).
func apiServerClient(dir string) (string, error) {
	bundle, err := certs.SelfSignedClient("kube-apiserver", 24*time.Hour)
	if err != nil {
		return "", err
	}
	if err := bundle.Write(dir); err != nil {
		return "", err
	}
	kubeconfig := filepath.Join(dir, "webhooks.kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
users:
- name: "*"
  user: {client-certificate: %q, client-key: %q}
`, filepath.Join(dir, certs.CertFile), filepath.Join(dir, certs.KeyFile))), 0o600); err != nil {
		return "", err
	}
	plugin := func(name string) string {
		return fmt.Sprintf(`- name: %s
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: %q
`, name, kubeconfig)
	}
	admission := filepath.Join(dir, "admission.yaml")
	return admission, os.WriteFile(admission, []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n"+
		plugin("ValidatingAdmissionWebhook")+plugin("MutatingAdmissionWebhook")), 0o600)
}

// controlPlaneBins returns the folder of kube-apiserver and etcd, built and cached by
// hack/control-plane-bins.sh unless KUBEBUILDER_ASSETS names one.
func controlPlaneBins(root string) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cmd := exec.Command(filepath.Join(root, "hack", "control-plane-bins.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building the control plane: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// istioCRDs is the CRD file shipped in the istio.io/api module meshguard builds against.
func istioCRDs() (string, error) {
	dir, err := moduleDir("istio.io/api")
	return filepath.Join(dir, "kubernetes", "customresourcedefinitions.gen.yaml"), err
}

// PolicyReportCRD is the wgpolicyk8s.io PolicyReport CRD, as Kyverno ships it: the kind
// meshguard's audit writes in a cluster without openreports.io. Its own module
// (sigs.k8s.io/wg-policy-prototypes) is not on the Go module proxy; Kyverno's is, pinned
// here and downloaded, not built against.
func PolicyReportCRD() (string, error) {
	const kyverno = "github.com/kyverno/kyverno@v1.19.1"
	out, err := exec.Command("go", "mod", "download", "-json", kyverno).Output()
	if err != nil {
		return "", fmt.Errorf("downloading %s: %w", kyverno, err)
	}
	var module struct{ Dir string }
	if err := json.Unmarshal(out, &module); err != nil {
		return "", fmt.Errorf("downloading %s: %w", kyverno, err)
	}
	return filepath.Join(module.Dir, "config", "crds", "policyreport", "wgpolicyk8s.io_policyreports.yaml"), nil
}

// moduleDir is where the go command keeps a module meshguard builds against: the Istio and
// Gateway API CRDs are installed from the modules of the versions meshguard reads.
func moduleDir(module string) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		return "", fmt.Errorf("finding the %s module: %w", module, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// TestPort is FreePort for a test, which fails if there is none.
func TestPort(t testing.TB) int {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// FreePort is a TCP port free on every address of this machine, for a server to listen on.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls the replica's readiness: the certificate served and every cache synced.
func (r *Replica) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if r.Ready() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("meshguard was not ready within %v", limit)
}

// register installs the webhook configurations of manifests/base, pointed at the local
// meshguard instead of its in-cluster Service: the suite runs what ships.
func register(ctx context.Context, kube *kubernetes.Clientset, root, url string, ca []byte) error {
	data, err := os.ReadFile(filepath.Join(root, "manifests", "base", "webhooks.yaml"))
	if err != nil {
		return err
	}
	docs := strings.Split(string(data), "\n---\n")
	if len(docs) != 2 {
		return fmt.Errorf("manifests/base/webhooks.yaml: want the validating and the mutating configuration, found %d documents", len(docs))
	}
	local := func(cc *admregv1.WebhookClientConfig) {
		u := url + *cc.Service.Path
		*cc = admregv1.WebhookClientConfig{URL: &u, CABundle: ca}
	}
	var vwc admregv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &vwc); err != nil {
		return fmt.Errorf("validating configuration: %w", err)
	}
	for i := range vwc.Webhooks {
		local(&vwc.Webhooks[i].ClientConfig)
	}
	var mwc admregv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict([]byte(docs[1]), &mwc); err != nil {
		return fmt.Errorf("mutating configuration: %w", err)
	}
	for i := range mwc.Webhooks {
		local(&mwc.Webhooks[i].ClientConfig)
	}
	if _, err := kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &vwc, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err = kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &mwc, metav1.CreateOptions{})
	return err
}
