package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// launcher is `make run`, built for the test and run from the repository's root.
type launcher struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	seen   map[int]bool // every process it started, while it ran
	exited chan error
}

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshguard-local")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return bin
}

func start(t *testing.T, bin, dir string) *launcher {
	t.Helper()
	l := &launcher{cmd: exec.Command(bin, "-dir", dir), seen: map[int]bool{}, exited: make(chan error, 1)}
	l.cmd.Dir = filepath.Join("..", "..", "..")
	stdout, _ := l.cmd.StdoutPipe()
	l.cmd.Stderr = l.cmd.Stdout
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			l.mu.Lock()
			l.lines = append(l.lines, sc.Text())
			l.mu.Unlock()
		}
		l.exited <- l.cmd.Wait()
	}()
	go l.watchChildren()
	return l
}

// watchChildren records the launcher's descendants until it exits.
func (l *launcher) watchChildren() {
	for l.cmd.ProcessState == nil {
		pids := []int{l.cmd.Process.Pid}
		for len(pids) > 0 {
			out, _ := exec.Command("pgrep", "-P", strconv.Itoa(pids[0])).Output()
			pids = pids[1:]
			for _, f := range strings.Fields(string(out)) {
				pid, _ := strconv.Atoi(f)
				l.mu.Lock()
				l.seen[pid] = true
				l.mu.Unlock()
				pids = append(pids, pid)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (l *launcher) waitLine(t *testing.T, want string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		for _, line := range l.lines {
			if strings.Contains(line, want) {
				l.mu.Unlock()
				return
			}
		}
		l.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no line %q within %v; output:\n%s", want, limit, l.output())
}

func (l *launcher) output() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// stop signals the launcher and checks that it, and everything it started, is gone.
func (l *launcher) stop(t *testing.T, sig syscall.Signal, dir string) {
	t.Helper()
	_ = l.cmd.Process.Signal(sig)
	select {
	case <-l.exited:
	case <-time.After(60 * time.Second):
		_ = l.cmd.Process.Kill()
		t.Fatalf("still running 60s after %v:\n%s", sig, l.output())
	}
	time.Sleep(500 * time.Millisecond)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) == 0 {
		t.Error("saw no child processes; the check below proves nothing")
	}
	for pid := range l.seen {
		if syscall.Kill(pid, 0) == nil {
			out, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			t.Errorf("process %d outlived make run: %s", pid, strings.ReplaceAll(string(out), "\x00", " "))
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s was left behind", dir)
	}
}

func TestLifecycle(t *testing.T) {
	bin := build(t)
	dir := filepath.Join(t.TempDir(), "run")
	l := start(t, bin, dir)
	l.waitLine(t, "meshguard ready", 3*time.Minute)
	l.waitLine(t, "export KUBECONFIG="+filepath.Join(dir, "kubeconfig"), time.Second)

	second := exec.Command(bin, "-dir", dir)
	second.Dir = l.cmd.Dir
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another `make run` is running") {
		t.Errorf("a second run beside a live one: err=%v\n%s", err, out)
	}
	l.stop(t, syscall.SIGTERM, dir)
}

func TestStaleAndInterruptedStart(t *testing.T) {
	bin := build(t)
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A run killed with SIGKILL leaves its pid behind; that process is long gone.
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte("999999999"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := start(t, bin, dir)
	l.waitLine(t, "left by a run that was killed", 30*time.Second)
	l.waitLine(t, "starting kube-apiserver", 30*time.Second)
	time.Sleep(2 * time.Second) // mid-start: the control plane is coming up
	l.stop(t, syscall.SIGINT, dir)
}
