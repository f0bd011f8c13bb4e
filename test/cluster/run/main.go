// Command run is `make run`: a local control plane on loopback with meshguard enforcing,
// in the foreground until SIGINT or SIGTERM, after which nothing it started is left.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/meshguard/meshguard/test/cluster"
)

// runDir holds the kubeconfig, certificates, logs and the pid of a running `make run`.
var runDir = flag.String("dir", ".run", "folder for the kubeconfig, certificates, log and pid")

// probe is a request meshguard must deny: the proof that requests go through it.
const probe = `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: meshguard-probe, namespace: default}
spec:
  selector: {matchLabels: {app: meshguard-probe}}
  jwtRules: [{issuer: "https://idp.example.com", jwksUri: "https://idp.example.com/keys"}]
`

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "make run:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(*runDir)
	if err != nil {
		return err
	}
	if err := claim(dir); err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logFile, err := os.Create(filepath.Join(dir, "meshguard.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	fmt.Println("starting kube-apiserver, etcd and meshguard (the first run builds the control plane: minutes)")
	c, err := cluster.Start(ctx, cluster.Options{Root: root, Dir: dir, Log: logFile})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("stopping meshguard, kube-apiserver and etcd")
		c.Stop()
	}()
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig)
	if err := throughWebhook(ctx, c.Kubeconfig); err != nil {
		return err
	}
	fmt.Printf("meshguard ready (its log: %s)\n", logFile.Name())
	<-ctx.Done()
	return nil
}

// claim takes the run folder: refused while another `make run` lives, reclaimed from one
// that was killed.
func claim(dir string) error {
	pidFile := filepath.Join(dir, "pid")
	if data, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid != os.Getpid() && alive(pid) {
			return fmt.Errorf("another `make run` is running (pid %d); stop it first", pid)
		}
		fmt.Fprintf(os.Stderr, "make run: removing %s, left by a run that was killed\n", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o600)
}

func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	return err == nil && p.Signal(syscall.Signal(0)) == nil
}

// throughWebhook sends the probe as a server-side dry run and expects meshguard's denial.
func throughWebhook(ctx context.Context, kubeconfig string) error {
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kubeconfig, "apply", "--dry-run=server", "-f", "-")
	cmd.Stdin = strings.NewReader(probe)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "MG101") {
		return errors.New("a request did not go through meshguard: " + strings.TrimSpace(string(out)))
	}
	return nil
}
