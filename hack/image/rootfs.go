package main

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// nonroot is the user the image runs as, distroless's: no shell, no home of root's.
const nonroot = 65532

// file is one entry of the image's filesystem.
type file struct {
	path     string
	mode     fs.FileMode // fs.ModeDir for a directory
	uid      int
	data     []byte
	fromPath string // read from this file instead of data (the binary)
}

func (f file) contents() ([]byte, error) {
	if f.fromPath != "" {
		return os.ReadFile(f.fromPath)
	}
	return f.data, nil
}

// baseFiles are what distroless's static image gives a Go binary: the users (root,
// nonroot, nobody) with no login shell, name resolution through /etc/hosts then DNS, the
// CA certificates, and a /tmp. Nothing runs here but /meshguard: no shell, no libc.
func baseFiles() []file {
	return []file{
		{path: "etc", mode: fs.ModeDir | 0o755},
		{path: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		{path: "etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{path: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{path: "etc/ssl", mode: fs.ModeDir | 0o755},
		{path: "etc/ssl/certs", mode: fs.ModeDir | 0o755},
		{path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: caCertificates()},
		{path: "home", mode: fs.ModeDir | 0o755},
		{path: "home/nonroot", mode: fs.ModeDir | 0o700, uid: nonroot},
		{path: "root", mode: fs.ModeDir | 0o700},
		{path: "tmp", mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}

// appFiles are meshguard's binary, built for a platform into dir.
func appFiles(src Source, platform, dir string) ([]file, error) {
	binary := filepath.Join(dir, "meshguard-"+strings.ReplaceAll(platform, "/", "-"))
	if err := compile(src, platform, binary); err != nil {
		return nil, err
	}
	return []file{{path: "meshguard", mode: 0o755, fromPath: binary}}, nil
}

// caCertificates is the Mozilla root store as Go's x509roots/fallback module carries it,
// in PEM. Roots it trusts only under a constraint (distrusted after a date) are left out:
// a PEM bundle cannot say so.
func caCertificates() []byte {
	var out bytes.Buffer
	for root := range bundle.Roots() {
		if root.Constraint == nil {
			_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate})
		}
	}
	return out.Bytes()
}

// compile builds meshguard, static, for a platform, as `make build` does.
func compile(src Source, platform, out string) error {
	goos, goarch, ok := strings.Cut(platform, "/")
	if !ok {
		return fmt.Errorf("platform %q: want os/arch", platform)
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+src.Version, "-o", out, "./cmd/meshguard")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building meshguard for %s: %w", platform, err)
	}
	return nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return "", fmt.Errorf("not in meshguard's module: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// layerTar is files as a tar stream in the order given, every entry of the same time and
// of numeric owners only, so that the same files give the same bytes.
func layerTar(files []file, epoch time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.path, Mode: int64(f.mode.Perm()), Uid: f.uid, Gid: f.uid, ModTime: epoch, Format: tar.FormatPAX}
		if f.mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		data, err := f.contents()
		if err != nil {
			return nil, err
		}
		if f.mode.IsDir() {
			h.Typeflag, h.Name = tar.TypeDir, f.path+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeRootFS writes a platform's filesystem into dir: what the Dockerfile copies onto
// scratch, so that both builds hold the same files. Owners are the Dockerfile's to set.
func writeRootFS(src Source, platform, dir string) error {
	work, err := os.MkdirTemp("", "meshguard-rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	app, err := appFiles(src, platform, work)
	if err != nil {
		return err
	}
	for _, f := range append(baseFiles(), app...) {
		path := filepath.Join(dir, f.path)
		if f.mode.IsDir() {
			if err := os.MkdirAll(path, f.mode.Perm()); err != nil {
				return err
			}
			if err := os.Chmod(path, f.mode.Perm()|f.mode&fs.ModeSticky); err != nil {
				return err
			}
			continue
		}
		data, err := f.contents()
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, data, f.mode.Perm()); err != nil {
			return err
		}
	}
	return nil
}
