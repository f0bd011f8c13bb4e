// Command image builds meshguard's container image with the Go toolchain alone, no container
// engine: an OCI image index for linux/amd64 and linux/arm64 in an OCI layout, an SPDX SBOM
// per platform beside it, the same digest from the same commit.
//
//	go run ./hack/image build [-o bin/image] [-version v0.2.0]   (make image)
//	go run ./hack/image push -o bin/image ghcr.io/meshguard/meshguard:v0.2.0
//	go run ./hack/image digest -o bin/image [-platform linux/arm64]  (the index's, or a platform's)
//	go run ./hack/image rootfs -platform linux/amd64 DIR         (the Dockerfile's build stage)
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Repository is where meshguard's releases publish the image; the manifests name it.
const Repository = "ghcr.io/meshguard/meshguard"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("want a command: build, push, digest or rootfs")
	}
	flags := flag.NewFlagSet(args[0], flag.ContinueOnError)
	out := flags.String("o", "bin/image", "the OCI layout's directory")
	version := flags.String("version", "", "the version stamped in the binary and the labels (default: git describe)")
	platforms := flags.String("platforms", "linux/amd64,linux/arm64", "the platforms of the index, comma-separated")
	platform := flags.String("platform", "linux/amd64", "rootfs: the platform of the files written; digest: the platform's image")
	if err := flags.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "build":
		src, err := source(*version)
		if err != nil {
			return err
		}
		digest, err := build(src, strings.Split(*platforms, ","), *out)
		if err != nil {
			return err
		}
		fmt.Printf("%s %s@%s\n", *out, src.ref(), digest)
		return nil
	case "push":
		if flags.NArg() != 1 {
			return fmt.Errorf("push: want one reference to push to")
		}
		digest, err := push(*out, flags.Arg(0))
		if err != nil {
			return err
		}
		fmt.Println(digest)
		return nil
	case "digest":
		digest, err := layoutDigest(*out, given(flags, "platform"), *platform)
		if err != nil {
			return err
		}
		fmt.Println(digest)
		return nil
	case "rootfs":
		if flags.NArg() != 1 {
			return fmt.Errorf("rootfs: want the directory to write into")
		}
		src, err := source(*version)
		if err != nil {
			return err
		}
		return writeRootFS(src, *platform, flags.Arg(0))
	}
	return fmt.Errorf("unknown command %q: want build, push, digest or rootfs", args[0])
}

// Source is what an image is built from, and what makes it the same image twice: the
// version, the commit, and the time every file and the image carry.
type Source struct {
	Version, Revision string
	Epoch             time.Time
}

func (s Source) ref() string { return Repository + ":" + s.Version }

// source reads the commit from git: SOURCE_DATE_EPOCH, else the commit's time, is the
// time of every file; outside a git tree (a Docker build context) the epoch is 0.
func source(version string) (Source, error) {
	s := Source{Version: version, Revision: gitOutput("rev-parse", "HEAD")}
	if s.Version == "" {
		s.Version = gitOutput("describe", "--tags", "--always", "--dirty")
	}
	if s.Version == "" {
		s.Version = "dev"
	}
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		epoch = gitOutput("log", "-1", "--format=%ct")
	}
	seconds := int64(0)
	if epoch != "" {
		var err error
		if seconds, err = strconv.ParseInt(epoch, 10, 64); err != nil {
			return s, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", epoch, err)
		}
	}
	s.Epoch = time.Unix(seconds, 0).UTC()
	return s, nil
}

// given tells whether a flag was set on the command line.
func given(flags *flag.FlagSet, name string) bool {
	set := false
	flags.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func gitOutput(args ...string) string {
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
