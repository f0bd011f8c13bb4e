// Package image checks the Dockerfile without a Docker engine: its stages, its final base and
// user, and the binary its build command makes (static, runnable, versioned), and that the
// Deployments run as the image's user.
package image

import (
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	name, args string
	line       int
}

func parseDockerfile(t *testing.T, path string) [][]instruction {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]instruction
	var pending string
	start := 0
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if pending == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if pending == "" {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, "\\") {
			pending += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		full := pending + trimmed
		pending = ""
		name, args, _ := strings.Cut(full, " ")
		in := instruction{name: strings.ToUpper(name), args: strings.TrimSpace(args), line: start}
		if in.name == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.name != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.name)
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	return stages
}

func TestDockerfile(t *testing.T) {
	root := filepath.Join("..", "..")
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, found %d stage(s)", len(stages))
	}
	final := stages[len(stages)-1]
	base := final[0].args
	if !strings.HasPrefix(base, "gcr.io/distroless/static") || !strings.HasSuffix(base, ":nonroot") {
		t.Errorf("Dockerfile:%d: final base %q, want distroless static, nonroot", final[0].line, base)
	}
	var user, entrypoint string
	for _, in := range final {
		switch in.name {
		case "RUN":
			t.Errorf("Dockerfile:%d: RUN in the final stage, which has no shell", in.line)
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		}
	}
	if user != "65532:65532" {
		t.Errorf("final stage runs as %q, want 65532:65532 (distroless nonroot)", user)
	}
	var exe []string
	if err := json.Unmarshal([]byte(entrypoint), &exe); err != nil || len(exe) != 1 || exe[0] != "/meshguard" {
		t.Errorf("ENTRYPOINT %q, want the exec form [\"/meshguard\"]", entrypoint)
	}

	// Build with the build stage's own command, into a temporary folder.
	var build string
	for _, in := range stages[0] {
		if in.name == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	if !strings.Contains(build, "CGO_ENABLED=0") {
		t.Fatalf("the build stage's go build %q is not static (CGO_ENABLED=0)", build)
	}
	out := t.TempDir()
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(build, "-o /out/", "-o "+out+"/"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "VERSION=v0.0.0-image-test")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build command: %v\n%s", err, b)
	}
	bin := filepath.Join(out, "meshguard")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary needs a dynamic loader; distroless static has none")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links %v", libs)
	}
	version, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(version)) != "meshguard v0.0.0-image-test" {
		t.Errorf("meshguard version: %q, %v", version, err)
	}
}

// TestDeploymentsRunAsImageUser: the Pods' securityContext names the image's user, so
// runAsNonRoot holds without the kubelet guessing from the image.
func TestDeploymentsRunAsImageUser(t *testing.T) {
	for _, path := range []string{"manifests/base/deployment.yaml", "manifests/helm/meshguard/templates/deployment.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", path))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"runAsNonRoot: true", "runAsUser: 65532", "runAsGroup: 65532", "readOnlyRootFilesystem: true"} {
			if !strings.Contains(string(data), want) {
				t.Errorf("%s lacks %q", path, want)
			}
		}
	}
}
