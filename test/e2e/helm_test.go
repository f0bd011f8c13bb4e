package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshguard/meshguard/certs"
	"github.com/meshguard/meshguard/kinds/kindstest"
)

// helmVersion is the Helm the chart is linted and rendered with, built from the module proxy.
const helmVersion = "v3.22.0"

func helm(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	install := exec.Command("go", "install", "helm.sh/helm/v3/cmd/helm@"+helmVersion)
	install.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("building helm: %v\n%s", err, out)
	}
	return filepath.Join(bin, "helm")
}

// TestHelmChart lints the chart, renders it in both certificate modes and dry-runs the
// result on the server; the chart's CRD must be the generated one.
func TestHelmChart(t *testing.T) {
	chart := filepath.Join(repoRoot(), "manifests", "helm", "meshguard")
	generated, err := os.ReadFile(filepath.Join(repoRoot(), "manifests", "crd", "meshguard.io_meshguardrails.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if inChart, err := os.ReadFile(filepath.Join(chart, "crds", "meshguard.io_meshguardrails.yaml")); err != nil || !bytes.Equal(inChart, generated) {
		t.Errorf("the chart's CRD differs from manifests/crd; run `make generate` (err %v)", err)
	}
	installCertManagerCRDs(t)
	h := helm(t)
	if out, err := exec.Command(h, "lint", "--strict", chart).CombinedOutput(); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	for _, mode := range []string{"cert-manager", "self-signed"} {
		t.Run(mode, func(t *testing.T) {
			out, err := exec.Command(h, "template", "meshguard", chart, "-n", "meshguard-system", "--set", "certMode="+mode, "--set", "istiodVersion=1.28.5").CombinedOutput()
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			objects, webhooks := splitWebhooks(t, string(out))
			if _, stderr, err := kubectl(t, objects, "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-"); err != nil {
				t.Fatalf("server-side dry run: %v\n%s", err, stderr)
			}
			var vwc admregv1.ValidatingWebhookConfiguration
			var mwc admregv1.MutatingWebhookConfiguration
			for _, doc := range webhooks {
				into := any(&vwc)
				if strings.Contains(doc, "kind: MutatingWebhookConfiguration") {
					into = &mwc
				}
				if err := yaml.UnmarshalStrict([]byte(strings.TrimPrefix(strings.TrimSpace(doc), "---")), into); err != nil {
					t.Fatal(err)
				}
			}
			if err := kindstest.CheckWebhooks(vwc, mwc); err != nil {
				t.Error(err)
			}
			if err := kindstest.CheckClusterRole(clusterRole(t, objects, "meshguard")); err != nil {
				t.Error(err)
			}
			for _, w := range vwc.Webhooks {
				// Security kinds fail closed; waypoint bindings and Pods open.
				want := admregv1.Fail
				if w.Name == "waypoints.meshguard.io" || w.Name == "pods.meshguard.io" {
					want = admregv1.Ignore
				}
				if *w.FailurePolicy != want || *w.SideEffects != admregv1.SideEffectClassNone || w.ClientConfig.Service.Namespace != "meshguard-system" {
					t.Errorf("validating webhook %s: failurePolicy %s, sideEffects %s", w.Name, *w.FailurePolicy, *w.SideEffects)
				}
			}
			if len(mwc.Webhooks) != 1 || *mwc.Webhooks[0].FailurePolicy != admregv1.Ignore {
				t.Errorf("mutating webhook: %+v", mwc.Webhooks)
			}
			excluded := mwc.Webhooks[0].NamespaceSelector.MatchExpressions[0].Values
			if strings.Join(excluded, ",") != "kube-system,kube-node-lease,meshguard-system" {
				t.Errorf("excluded namespaces: %v", excluded)
			}
			injected := vwc.Annotations["cert-manager.io/inject-ca-from"] == "meshguard-system/meshguard-serving-cert"
			selfSigned := strings.Contains(objects, "- --self-signed")
			if injected != (mode == "cert-manager") || selfSigned != (mode == "self-signed") || !strings.Contains(objects, "--istiod-version=1.28.5") {
				t.Errorf("%s: CA injection %v, --self-signed %v", mode, injected, selfSigned)
			}
		})
	}
	// Reviews from the API server only: the client CA from cert-manager's root, or given.
	ca, err := certs.SelfSignedClient("kube-apiserver", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.CA, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		args, want []string
	}{
		{"cert-manager issues the API server's certificate", []string{"--set", "certMode=cert-manager,clientAuth.enabled=true"},
			[]string{"- --client-ca-file=/certs/ca.crt", "name: meshguard-apiserver-client", "usages: [client auth, digital signature]"}},
		{"a CA given", []string{"--set", "certMode=self-signed,clientAuth.enabled=true", "--set-file", "clientAuth.caBundle=" + caFile},
			[]string{"- --client-ca-file=/client-ca/ca.crt", "name: meshguard-client-ca", "-----BEGIN CERTIFICATE-----"}},
		{"the webhook port narrowed, metrics closed", []string{"--set", "networkPolicy.webhookFrom[0].ipBlock.cidr=10.0.0.0/24,networkPolicy.metricsFrom=null"},
			[]string{"cidr: 10.0.0.0/24"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := exec.Command(h, append([]string{"template", "meshguard", chart, "-n", "meshguard-system"}, c.args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			for _, want := range c.want {
				if !strings.Contains(string(out), want) {
					t.Errorf("the chart lacks %q", want)
				}
			}
			objects, _ := splitWebhooks(t, string(out))
			if _, stderr, err := kubectl(t, objects, "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-"); err != nil {
				t.Fatalf("server-side dry run: %v\n%s", err, stderr)
			}
			if metricsOpen := strings.Contains(string(out), "port: 8080}]"); metricsOpen == strings.Contains(c.name, "metrics closed") {
				t.Errorf("metrics port open: %v", metricsOpen)
			}
		})
	}
	out, err := exec.Command(h, "template", "meshguard", chart, "-n", "meshguard-system", "--set", "certMode=self-signed", "--set", "clientAuth.enabled=true").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "clientAuth.enabled needs clientAuth.caBundle") {
		t.Errorf("client authentication without a CA: err=%v\n%.300s", err, out)
	}
	// meshguard's own namespace is never judged: not Istio's root namespace, then.
	out, err = exec.Command(h, "template", "meshguard", chart, "-n", "istio-system").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not in Istio's root namespace istio-system") {
		t.Errorf("installed in the root namespace: err=%v\n%.300s", err, out)
	}
}

// clusterRole returns the ClusterRole of a name among rendered objects.
func clusterRole(t *testing.T, rendered, name string) rbacv1.ClusterRole {
	t.Helper()
	for _, doc := range strings.Split(rendered, "\n---\n") {
		var role rbacv1.ClusterRole
		if err := yaml.Unmarshal([]byte(doc), &role); err != nil {
			t.Fatal(err)
		}
		if role.Kind == "ClusterRole" && role.Name == name {
			return role
		}
	}
	t.Fatalf("no ClusterRole %s rendered", name)
	return rbacv1.ClusterRole{}
}
