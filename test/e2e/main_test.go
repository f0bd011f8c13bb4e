// Package e2e drives meshguard the way users meet it: a real kube-apiserver and etcd, the
// real Istio CRDs, `meshguard serve` as its own process, and the real kubectl.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshguard/meshguard/test/cluster"
)

// local is the control plane every test of the suite shares; meshguard there serves its
// profiles at pprofAddress.
var (
	local        *cluster.Cluster
	pprofAddress string
)

func TestMain(m *testing.M) {
	// meshguard's warnings reach the test's own clients; they are asserted, not logged.
	ctrllog.SetLogger(logr.Discard())
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "meshguard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	port, err := cluster.FreePort()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	pprofAddress = fmt.Sprintf("127.0.0.1:%d", port)
	policyReports, err := cluster.PolicyReportCRD()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	local, err = cluster.Start(context.Background(), cluster.Options{Root: repoRoot(), Dir: dir, CRDs: []string{policyReports},
		ServeArgs: []string{"--pprof-bind-address", pprofAddress}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer local.Stop()
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "meshguard's log:\n%s\n", local.Log())
	}
	return code
}

// repoRoot is two folders up from this package.
func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..")
}

// kubectl runs the real kubectl against the test API server, with manifest on stdin.
func kubectl(t *testing.T, manifest string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", local.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(manifest)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}
