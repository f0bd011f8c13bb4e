package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// recipe is a fenced YAML block of the README's CI recipes, by the file it says it is.
var recipe = regexp.MustCompile("(?s)```yaml\n# (\\S+)\n(.*?)```")

// TestReadmeCIRecipes runs the meshguard commands of the README's CI recipes, as each CI
// system would, from the root of a repository-shaped fixture: the recipes work as written.
func TestReadmeCIRecipes(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	recipes := map[string][]byte{}
	for _, m := range recipe.FindAllSubmatch(readme, -1) {
		recipes[string(m[1])] = m[2]
	}
	var github struct {
		Jobs map[string]struct{ Steps []struct{ Run string } }
	}
	var gitlab map[string]struct{ Script []string }
	var precommit struct {
		Repos []struct{ Hooks []struct{ Entry string } }
	}
	for file, into := range map[string]any{".github/workflows/meshguard.yml": &github, ".gitlab-ci.yml": &gitlab, ".pre-commit-config.yaml": &precommit} {
		if err := yaml.Unmarshal(recipes[file], into); err != nil || len(recipes[file]) == 0 {
			t.Fatalf("README has no %s recipe (%v)", file, err)
		}
	}
	var commands []string
	for _, step := range github.Jobs["meshguard"].Steps {
		commands = append(commands, step.Run)
	}
	commands = append(commands, gitlab["meshguard"].Script...)
	commands = append(commands, precommit.Repos[0].Hooks[0].Entry)

	out := t.TempDir()
	t.Chdir(repo)
	ran := 0
	for _, command := range commands {
		args := strings.Fields(command)
		if len(args) == 0 || args[0] != "meshguard" {
			continue // go install: the binary under test stands in
		}
		var stdout, stderr bytes.Buffer
		target := ""
		if i := strings.Index(command, " > "); i >= 0 {
			args, target = strings.Fields(command[:i]), filepath.Join(out, strings.TrimSpace(command[i+3:]))
		}
		code := run(args[1:], nil, &stdout, &stderr)
		ran++
		// The fixture has a deny finding: a gate fails the job, a report does not.
		want := exitFindings
		if strings.Contains(command, "--fail-on none") {
			want = 0
		}
		if code != want {
			t.Errorf("%s: exit %d, want %d\n%s", command, code, want, stderr.String())
		}
		if target != "" {
			if err := os.WriteFile(target, stdout.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			var report map[string]any
			if err := json.Unmarshal(stdout.Bytes(), &report); err != nil || len(report) == 0 {
				t.Errorf("%s wrote no JSON: %v\n%s", command, err, stdout.String())
			}
		}
		if strings.Contains(command, "-o github") && !strings.Contains(stdout.String(), "::error file=k8s/web.yaml,line=16,title=MG101") {
			t.Errorf("%s:\n%s", command, stdout.String())
		}
	}
	if ran != 5 {
		t.Errorf("ran %d meshguard commands of the recipes, want 5", ran)
	}
}
