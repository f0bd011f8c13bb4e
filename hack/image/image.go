package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// build writes the image index of platforms into the OCI layout out (replacing it), and an
// SPDX SBOM per platform beside it, and returns the index's digest.
func build(src Source, platforms []string, out string) (v1.Hash, error) {
	work, err := os.MkdirTemp("", "meshguard-image-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.RemoveAll(work)
	base, err := layer(baseFiles(), src.Epoch)
	if err != nil {
		return v1.Hash{}, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	sboms := map[string][]byte{}
	for _, platform := range platforms {
		goos, goarch, _ := strings.Cut(platform, "/")
		app, err := appFiles(src, platform, work)
		if err != nil {
			return v1.Hash{}, err
		}
		appLayer, err := layer(app, src.Epoch)
		if err != nil {
			return v1.Hash{}, err
		}
		img, err := image(src, goos, goarch, base, appLayer)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("%s: %w", platform, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: goos, Architecture: goarch}}})
		if sboms[platform], err = sbom(src, platform, img, app[0].fromPath); err != nil {
			return v1.Hash{}, fmt.Errorf("%s: the SBOM: %w", platform, err)
		}
	}
	idx = mutate.Annotations(idx, labels(src)).(v1.ImageIndex)
	if err := os.RemoveAll(out); err != nil {
		return v1.Hash{}, err
	}
	p, err := layout.Write(out, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": src.ref()})); err != nil {
		return v1.Hash{}, err
	}
	for platform, doc := range sboms {
		if err := os.WriteFile(SBOMPath(out, platform), doc, 0o644); err != nil {
			return v1.Hash{}, err
		}
	}
	return idx.Digest()
}

// SBOMPath is where the SBOM of a platform's image goes: beside the layout.
func SBOMPath(layoutDir, platform string) string {
	return filepath.Clean(layoutDir) + "." + strings.ReplaceAll(platform, "/", "-") + ".spdx.json"
}

// labels are the image's OCI labels, on each image's config and as the index's annotations.
func labels(src Source) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "meshguard",
		"org.opencontainers.image.description": "Admission webhook that keeps Istio's JWT security honest",
		"org.opencontainers.image.source":      "https://github.com/meshguard/meshguard",
		"org.opencontainers.image.revision":    src.Revision,
		"org.opencontainers.image.version":     src.Version,
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.created":     src.Epoch.Format(time.RFC3339),
	}
}

// layer is files as an OCI layer.
func layer(files []file, epoch time.Time) (v1.Layer, error) {
	data, err := layerTar(files, epoch)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// image is one platform's image: the base layer, then meshguard's, run as nonroot.
func image(src Source, goos, goarch string, base, app v1.Layer) (v1.Image, error) {
	created := v1.Time{Time: src.Epoch}
	img, err := mutate.Append(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON),
		mutate.Addendum{Layer: base, History: v1.History{Created: created, CreatedBy: "meshguard base: users root, nonroot and nobody; CA certificates; /tmp"}},
		mutate.Addendum{Layer: app, History: v1.History{Created: created, CreatedBy: "go build -trimpath ./cmd/meshguard (CGO_ENABLED=0)"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = goos, goarch, created
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", nonroot, nonroot),
		Entrypoint: []string{"/meshguard"},
		WorkingDir: "/",
		Labels:     labels(src),
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return img, nil
}

// push sends the image index of the layout dir to ref, with the credentials of the
// docker config (as `docker login` or the release workflow leave them), and returns the
// digest reference it is known by.
func push(dir, ref string) (string, error) {
	idx, err := LayoutIndex(dir)
	if err != nil {
		return "", err
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	if err := remote.WriteIndex(r, idx, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return "", fmt.Errorf("pushing to %s: %w", ref, err)
	}
	digest, err := idx.Digest()
	if err != nil {
		return "", err
	}
	return r.Context().Digest(digest.String()).String(), nil
}

// layoutDigest is the digest of the layout's image index, or with byPlatform of the image
// of platform in it: what a release signs, and attests each SBOM to.
func layoutDigest(dir string, byPlatform bool, platform string) (v1.Hash, error) {
	idx, err := LayoutIndex(dir)
	if err != nil {
		return v1.Hash{}, err
	}
	if !byPlatform {
		return idx.Digest()
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS+"/"+d.Platform.Architecture == platform {
			return d.Digest, nil
		}
	}
	return v1.Hash{}, fmt.Errorf("the OCI layout %s has no image for %s", dir, platform)
}

// LayoutIndex is the image index an OCI layout written by build holds.
func LayoutIndex(dir string) (v1.ImageIndex, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the OCI layout %s: %w", dir, err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := top.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("the OCI layout %s holds %d entries, want meshguard's one image index", dir, len(m.Manifests))
	}
	return top.ImageIndex(m.Manifests[0].Digest)
}
