package main

import (
	"bytes"
	"debug/buildinfo"
	"fmt"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdx/v2/common"
)

// sbom is the SPDX 2.3 document of one platform's image: the image, the files of its base
// (and the module its CA certificates come from), and meshguard's binary with every
// module it was linked from, as the binary itself records them.
func sbom(src Source, platform string, img v1.Image, binary string) ([]byte, error) {
	info, err := buildinfo.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	_, arch, _ := strings.Cut(platform, "/")
	imagePkg := &spdx.Package{
		PackageName: "meshguard", PackageSPDXIdentifier: "image", PackageVersion: src.Version,
		PackageDownloadLocation: "NOASSERTION", PrimaryPackagePurpose: "CONTAINER", PackageLicenseDeclared: "Apache-2.0",
		PackageExternalReferences: []*spdx.PackageExternalReference{{Category: "PACKAGE-MANAGER", RefType: "purl",
			Locator: fmt.Sprintf("pkg:oci/meshguard@%s?arch=%s&repository_url=%s", digest, arch, Repository)}},
	}
	base := &spdx.Package{
		PackageName: "meshguard-base", PackageSPDXIdentifier: "base", PackageVersion: src.Version,
		PackageDownloadLocation: "NOASSERTION", PrimaryPackagePurpose: "OPERATING-SYSTEM",
		PackageComment: "/etc/passwd, /etc/group, /etc/nsswitch.conf, /home/nonroot, /root, /tmp, and " +
			"/etc/ssl/certs/ca-certificates.crt from " + caModule(),
	}
	binaryPkg := goPackage(info.Main.Path, src.Version)
	binaryPkg.PrimaryPackagePurpose = "APPLICATION"
	binaryPkg.PackageLicenseDeclared = "Apache-2.0"
	doc := &spdx.Document{
		SPDXVersion: spdx.Version, DataLicense: spdx.DataLicense, SPDXIdentifier: "DOCUMENT",
		DocumentName:      "meshguard-" + src.Version + "-" + strings.ReplaceAll(platform, "/", "-"),
		DocumentNamespace: "https://github.com/meshguard/meshguard/spdx/" + digest.Hex,
		CreationInfo: &spdx.CreationInfo{Created: src.Epoch.Format(time.RFC3339),
			Creators: []common.Creator{{CreatorType: "Organization", Creator: "meshguard"}, {CreatorType: "Tool", Creator: "meshguard hack/image"}}},
		Packages: []*spdx.Package{imagePkg, base, binaryPkg, goPackage("stdlib", info.GoVersion)},
		Relationships: []*spdx.Relationship{
			relationship("DOCUMENT", "DESCRIBES", "image"),
			relationship("image", "CONTAINS", "base"),
			relationship("image", "CONTAINS", binaryPkg.PackageSPDXIdentifier),
			relationship(binaryPkg.PackageSPDXIdentifier, "DEPENDS_ON", "go-stdlib"),
		},
	}
	for _, dep := range info.Deps {
		if dep.Replace != nil {
			dep = dep.Replace
		}
		p := goPackage(dep.Path, dep.Version)
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, relationship(binaryPkg.PackageSPDXIdentifier, "DEPENDS_ON", p.PackageSPDXIdentifier))
	}
	var out bytes.Buffer
	if err := spdxjson.Write(doc, &out, spdxjson.Indent("  "), spdxjson.EscapeHTML(false)); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

var notInID = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// goPackage is a Go module (or the standard library) as an SPDX package, named by its purl.
func goPackage(path, version string) *spdx.Package {
	return &spdx.Package{
		PackageName: path, PackageSPDXIdentifier: common.ElementID("go-" + notInID.ReplaceAllString(path, "-")), PackageVersion: version,
		PackageDownloadLocation: "NOASSERTION", PrimaryPackagePurpose: "LIBRARY",
		PackageExternalReferences: []*spdx.PackageExternalReference{{Category: "PACKAGE-MANAGER", RefType: "purl",
			Locator: "pkg:golang/" + path + "@" + version}},
	}
}

func relationship(a common.ElementID, kind string, b common.ElementID) *spdx.Relationship {
	return &spdx.Relationship{RefA: common.MakeDocElementID("", string(a)), RefB: common.MakeDocElementID("", string(b)), Relationship: kind}
}

// caModule is the module and version the CA certificates come from, as this program was
// built with it.
func caModule() string {
	const module = "golang.org/x/crypto/x509roots/fallback"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == module {
				return module + "@" + dep.Version
			}
		}
	}
	return module
}
