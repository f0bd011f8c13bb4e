// Package image proves the image `make image` builds without a container engine
// (hack/image): a valid multi-platform OCI layout, the same digest twice, served and pulled
// back from a registry, its root filesystem running meshguard as the nonroot user, the
// Dockerfile writing the same files, and the manifests naming it.
package image

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"sigs.k8s.io/yaml"
)

const (
	version  = "v0.0.0-image-test"
	platform = "linux/" + runtime.GOARCH
)

var (
	root = filepath.Join("..", "..")
	// tool is hack/image, built once; built is the layout it wrote, once for all tests.
	tool, built string
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "meshguard-image-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		tool = filepath.Join(dir, "image")
		if out, err := exec.Command("go", "build", "-o", tool, "../../hack/image").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building hack/image: %v\n%s", err, out)
			return 1
		}
		built = filepath.Join(dir, "image-layout")
		if err := buildImage(built); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}())
}

// buildImage runs hack/image as `make image` does, into dir.
func buildImage(dir string) error {
	cmd := exec.Command(tool, "build", "-o", dir, "-version", version)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("hack/image build: %v\n%s", err, out)
	}
	return nil
}

// index is the image index of the layout in dir, as a registry client reads it.
func index(t *testing.T, dir string) (v1.ImageIndex, map[string]string) {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 {
		t.Fatalf("index.json lists %d entries, want the one image index", len(m.Manifests))
	}
	idx, err := top.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return idx, m.Manifests[0].Annotations
}

// images are the index's images by platform ("linux/amd64").
func images(t *testing.T, idx v1.ImageIndex) map[string]v1.Image {
	t.Helper()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Image{}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		out[d.Platform.OS+"/"+d.Platform.Architecture] = img
	}
	return out
}

// files are an image's flattened filesystem: each path's header and contents.
func files(t *testing.T, img v1.Image) map[string]*entry {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]*entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(h.Name, "/")] = &entry{header: h, data: data}
	}
}

type entry struct {
	header *tar.Header
	data   []byte
}

// TestLayout: index.json → the image index → an image for each platform → its config:
// run as 65532 with /meshguard as entrypoint, labelled; its files hold a static binary of
// that platform, the nonroot user, the CA certificates, and no shell.
func TestLayout(t *testing.T) {
	idx, annotations := index(t, built)
	if ref := annotations["org.opencontainers.image.ref.name"]; ref != "ghcr.io/meshguard/meshguard:"+version {
		t.Errorf("the layout names the image %q", ref)
	}
	imgs := images(t, idx)
	machines := map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64}
	if len(imgs) != len(machines) {
		t.Errorf("platforms %v, want linux/amd64 and linux/arm64", imgs)
	}
	for platform, machine := range machines {
		img := imgs[platform]
		if img == nil {
			t.Errorf("no image for %s", platform)
			continue
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS+"/"+cf.Architecture != platform || cf.Config.User != "65532:65532" || strings.Join(cf.Config.Entrypoint, " ") != "/meshguard" {
			t.Errorf("%s: config %s/%s, user %q, entrypoint %q", platform, cf.OS, cf.Architecture, cf.Config.User, cf.Config.Entrypoint)
		}
		for _, label := range []string{"source", "revision", "version", "licenses"} {
			if cf.Config.Labels["org.opencontainers.image."+label] == "" {
				t.Errorf("%s: no label org.opencontainers.image.%s", platform, label)
			}
		}
		if v := cf.Config.Labels["org.opencontainers.image.version"]; v != version {
			t.Errorf("%s: version label %q", platform, v)
		}
		fs := files(t, img)
		for path := range fs {
			if path == "bin" || strings.HasPrefix(path, "bin/") || strings.HasSuffix(path, "/sh") {
				t.Errorf("%s: %s: a shell, or a place for one", platform, path)
			}
		}
		bin := fs["meshguard"]
		if bin == nil || bin.header.Mode&0o111 == 0 {
			t.Fatalf("%s: no executable /meshguard", platform)
		}
		f, err := elf.NewFile(bytes.NewReader(bin.data))
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != machine {
			t.Errorf("%s: the binary is for %v", platform, f.Machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: the binary needs a dynamic loader, and the image has none", platform)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s: the binary links %v", platform, libs)
		}
		if passwd := fs["etc/passwd"]; passwd == nil || !strings.Contains(string(passwd.data), "nonroot:x:65532:65532:") {
			t.Errorf("%s: no nonroot user in /etc/passwd", platform)
		}
		if home := fs["home/nonroot"]; home == nil || home.header.Uid != 65532 {
			t.Errorf("%s: /home/nonroot is not the nonroot user's", platform)
		}
		if tmp := fs["tmp"]; tmp == nil || tmp.header.Mode&0o1777 != 0o1777 {
			t.Errorf("%s: /tmp is not world-writable and sticky", platform)
		}
		if n := certificates(t, fs["etc/ssl/certs/ca-certificates.crt"]); n < 100 {
			t.Errorf("%s: %d CA certificates", platform, n)
		}
		sbom, err := os.ReadFile(built + "." + strings.ReplaceAll(platform, "/", "-") + ".spdx.json")
		if err != nil {
			t.Fatalf("%s: no SBOM beside the layout: %v", platform, err)
		}
		var doc struct {
			SPDXVersion string `json:"spdxVersion"`
			Packages    []struct {
				Name string `json:"name"`
			} `json:"packages"`
		}
		err = json.Unmarshal(sbom, &doc)
		found := false
		for _, p := range doc.Packages {
			found = found || p.Name == "sigs.k8s.io/controller-runtime"
		}
		if err != nil || doc.SPDXVersion != "SPDX-2.3" || !found {
			t.Errorf("%s: SBOM %s, %d packages, controller-runtime listed: %v, %v", platform, doc.SPDXVersion, len(doc.Packages), found, err)
		}
	}
}

func certificates(t *testing.T, e *entry) int {
	t.Helper()
	if e == nil {
		return 0
	}
	n := 0
	for rest := e.data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return n
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			t.Errorf("a CA certificate does not parse: %v", err)
		}
		n++
	}
}

// TestReproducible: a second build from the same commit has the same digest, and the
// same SBOMs.
func TestReproducible(t *testing.T) {
	again := filepath.Join(t.TempDir(), "image")
	if err := buildImage(again); err != nil {
		t.Fatal(err)
	}
	first, _ := index(t, built)
	second, _ := index(t, again)
	d1, _ := first.Digest()
	d2, _ := second.Digest()
	if d1 != d2 {
		t.Errorf("two builds: %s and %s", d1, d2)
	}
	for _, p := range []string{"linux-amd64", "linux-arm64"} {
		a, _ := os.ReadFile(built + "." + p + ".spdx.json")
		b, _ := os.ReadFile(again + "." + p + ".spdx.json")
		if !bytes.Equal(a, b) {
			t.Errorf("two builds' %s SBOMs differ", p)
		}
	}
}

// TestRegistry: `hack/image push` sends the index to a registry (go-containerregistry's,
// in process), and what is pulled back is the index built, image for image.
func TestRegistry(t *testing.T) {
	server := httptest.NewServer(registry.New())
	defer server.Close()
	u, _ := url.Parse(server.URL)
	ref := u.Host + "/meshguard/meshguard:" + version
	cmd := exec.Command(tool, "push", "-o", built, ref)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/image push: %v", err)
	}
	local, _ := index(t, built)
	want, _ := local.Digest()
	if got := strings.TrimSpace(string(out)); got != u.Host+"/meshguard/meshguard@"+want.String() {
		t.Errorf("push printed %q, want the digest reference of %s", got, want)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Index(r)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := pulled.Digest(); got != want {
		t.Errorf("pulled %s, pushed %s", got, want)
	}
	localImages, pulledImages := images(t, local), images(t, pulled)
	for platform, img := range localImages {
		l, _ := img.Digest()
		if pulledImages[platform] == nil {
			t.Errorf("%s not pulled back", platform)
			continue
		}
		p, _ := pulledImages[platform].Digest()
		layers, err := pulledImages[platform].Layers()
		if l != p || err != nil || len(layers) != 2 {
			t.Errorf("%s: pulled %s (%d layers, %v), pushed %s", platform, p, len(layers), err, l)
		}
	}
}

// TestRunsAsNonroot: this machine's platform's root filesystem, extracted, runs `meshguard
// version` and `meshguard check` on a seed as user 65532, chrooted into it where the test
// runs as root (as CI does).
func TestRunsAsNonroot(t *testing.T) {
	idx, _ := index(t, built)
	img := images(t, idx)[platform]
	if img == nil {
		t.Fatalf("no image for %s", platform)
	}
	rootfs := t.TempDir()
	for path, e := range files(t, img) {
		target := filepath.Join(rootfs, path)
		mode := fs.FileMode(e.header.Mode).Perm()
		if e.header.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
			defer os.Chmod(target, mode|fs.FileMode(e.header.Mode)&fs.ModeSticky) // once its files are in
			continue
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, e.data, mode); err != nil {
			t.Fatal(err)
		}
	}
	seed, err := os.ReadFile(filepath.Join(root, "examples", "seeds", "01-aks-ingress-entra", "unsafe.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "tmp", "seed.yaml"), seed, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, int) {
		cmd := exec.Command("/meshguard", args...)
		if os.Geteuid() == 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs, Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
		} else {
			// Not root: no chroot; the binary runs from the extracted tree as this user.
			cmd.Path = filepath.Join(rootfs, "meshguard")
			args[len(args)-1] = strings.Replace(args[len(args)-1], "/tmp/", filepath.Join(rootfs, "tmp")+"/", 1)
		}
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("meshguard %v: %v", args, err)
		}
		return string(out), code
	}
	if out, code := run("version"); code != 0 || strings.TrimSpace(out) != "meshguard "+version {
		t.Errorf("meshguard version: exit %d, %q", code, out)
	}
	if out, code := run("check", "-o", "json", "-f", "/tmp/seed.yaml"); code != 1 || !strings.Contains(out, `"MG101"`) {
		t.Errorf("meshguard check on the first seed: exit %d, want 1 (a deny: MG101)\n%s", code, out)
	}
}

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

// TestDockerfile: the Dockerfile, for those who build with Docker, puts on scratch the
// files hack/image's rootfs command writes, which are the files of the image `make image`
// builds (compared here, content for content), and runs them as the image does.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	if len(stages) != 2 {
		t.Fatalf("want a build stage and a final one, found %d stage(s)", len(stages))
	}
	var rootfsCmd string
	for _, in := range stages[0] {
		if in.name == "RUN" && strings.Contains(in.args, "./hack/image rootfs") {
			rootfsCmd = in.args
		}
	}
	if rootfsCmd == "" || !strings.HasSuffix(rootfsCmd, " /rootfs") {
		t.Fatalf("the build stage does not write the root filesystem with hack/image rootfs into /rootfs: %q", rootfsCmd)
	}
	final := stages[1]
	var copies []string
	var user, entrypoint string
	for _, in := range final[1:] {
		switch in.name {
		case "COPY":
			copies = append(copies, in.args)
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		default:
			t.Errorf("Dockerfile:%d: %s in the final stage, which holds the image's files only", in.line, in.name)
		}
	}
	if final[0].args != "scratch" {
		t.Errorf("Dockerfile:%d: final base %q, want scratch (the base files are hack/image's)", final[0].line, final[0].args)
	}
	if len(copies) != 2 || !strings.HasSuffix(copies[0], " /rootfs/ /") || !strings.Contains(copies[1], "--chown=65532:65532 /rootfs/home/nonroot /home/nonroot") {
		t.Errorf("the final stage copies %q, want the root filesystem, then /home/nonroot owned by nonroot", copies)
	}
	idx, _ := index(t, built)
	img := images(t, idx)["linux/amd64"]
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var exe []string
	if err := json.Unmarshal([]byte(entrypoint), &exe); err != nil || strings.Join(exe, " ") != strings.Join(cf.Config.Entrypoint, " ") || user != cf.Config.User {
		t.Errorf("Dockerfile: USER %q, ENTRYPOINT %q; the image: %q, %q", user, entrypoint, cf.Config.User, cf.Config.Entrypoint)
	}

	// The rootfs command, as the build stage runs it, for amd64 and the test's version.
	dir := t.TempDir()
	cmd := exec.Command(tool, "rootfs", "-version", version, "-platform", "linux/amd64", dir)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/image rootfs: %v\n%s", err, out)
	}
	want := files(t, img)
	got := map[string][]byte{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if !d.IsDir() {
			got[rel], err = os.ReadFile(path)
		} else {
			got[rel] = nil
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for path, e := range want {
		data, ok := got[path]
		if !ok {
			t.Errorf("the Dockerfile's filesystem lacks /%s", path)
		} else if !bytes.Equal(data, e.data) {
			t.Errorf("/%s differs between the Dockerfile's filesystem and the image's", path)
		}
		delete(got, path)
	}
	for path := range got {
		t.Errorf("the Dockerfile's filesystem has /%s, the image has not", path)
	}
}

// TestManifestsNameTheImage: the kustomize base and the Helm chart deploy the image the
// build produces: its repository, at the release the chart is of.
func TestManifestsNameTheImage(t *testing.T) {
	_, annotations := index(t, built)
	repository, _, _ := strings.Cut(annotations["org.opencontainers.image.ref.name"], ":"+version)
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	var values struct {
		Image struct{ Repository, Tag string } `json:"image"`
	}
	read := func(path string, into any) []byte {
		if !filepath.IsAbs(path) {
			path = filepath.Join(root, path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if into != nil {
			if err := yaml.Unmarshal(data, into); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
		return data
	}
	read("manifests/helm/meshguard/Chart.yaml", &chart)
	read("manifests/helm/meshguard/values.yaml", &values)
	if values.Image.Repository != repository || values.Image.Tag != "" || !strings.HasPrefix(chart.AppVersion, "v") {
		t.Errorf("the chart deploys %s:%s (appVersion %q), want %s at the chart's appVersion, a release tag", values.Image.Repository, values.Image.Tag, chart.AppVersion, repository)
	}
	if !strings.Contains(string(read("manifests/helm/meshguard/templates/deployment.yaml", nil)), ".Values.image.tag | default .Chart.AppVersion") {
		t.Error("the chart's Deployment does not default the tag to the appVersion")
	}
	if base := string(read("manifests/base/deployment.yaml", nil)); !strings.Contains(base, "image: "+repository+":"+chart.AppVersion+"\n") {
		t.Errorf("manifests/base/deployment.yaml does not deploy %s:%s", repository, chart.AppVersion)
	}

	// A release publishes each overlay with the image it pushed, by digest.
	idx, _ := index(t, built)
	digest, _ := idx.Digest()
	pinned := repository + "@" + digest.String()
	dist := t.TempDir()
	if out, err := exec.Command(filepath.Join(root, "hack", "release-manifests.sh"), pinned, dist).CombinedOutput(); err != nil {
		t.Fatalf("hack/release-manifests.sh: %v\n%s", err, out)
	}
	for _, overlay := range []string{"cert-manager", "cert-manager-client-auth", "self-signed"} {
		data := read(filepath.Join(dist, "meshguard-"+overlay+".yaml"), nil)
		images := 0
		for _, doc := range strings.Split(string(data), "\n---\n") {
			var d struct {
				Kind string `json:"kind"`
				Spec struct {
					Template struct {
						Spec struct {
							Containers []struct{ Image string } `json:"containers"`
						} `json:"spec"`
					} `json:"template"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
				t.Fatalf("%s: %v", overlay, err)
			}
			for _, c := range d.Spec.Template.Spec.Containers {
				images++
				if c.Image != pinned {
					t.Errorf("%s: %s runs %s, want %s", overlay, d.Kind, c.Image, pinned)
				}
			}
		}
		if images == 0 {
			t.Errorf("%s: no container rendered", overlay)
		}
	}
}

// TestDeploymentsRunAsImageUser: the Pods' securityContext names the image's user, so
// runAsNonRoot holds without the kubelet guessing from the image.
func TestDeploymentsRunAsImageUser(t *testing.T) {
	for _, path := range []string{"manifests/base/deployment.yaml", "manifests/helm/meshguard/templates/deployment.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, path))
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
