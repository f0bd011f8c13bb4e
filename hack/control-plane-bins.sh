#!/usr/bin/env bash
# Builds kube-apiserver and etcd of pinned versions from the Go module proxy, in throwaway
# modules outside meshguard's go.mod (their replace directives must live in a main module),
# and caches them by version. Prints the folder that holds both binaries.
#
#   KUBEBUILDER_ASSETS=$(hack/control-plane-bins.sh)
#
# setup-envtest cannot be used: it downloads prebuilt binaries from outside the proxy.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}     # matches the k8s.io/* v0.37 client libraries
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}   # Kubernetes 1.37 pins etcd 3.7
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/meshguard/control-plane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION

log() { echo "control-plane-bins: $*" >&2; }

if [[ -x $CACHE/kube-apiserver && -x $CACHE/etcd ]]; then
  echo "$CACHE"
  exit 0
fi
command -v go >/dev/null || { log "the Go toolchain is needed to build the control plane"; exit 1; }
mkdir -p "$CACHE"
# One build at a time per cache folder; a second caller waits for the first.
exec 9>"$CACHE/.lock"
flock 9
if [[ -x $CACHE/kube-apiserver && -x $CACHE/etcd ]]; then
  echo "$CACHE"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CGO_ENABLED=0 GOFLAGS=-mod=mod

if [[ ! -x $CACHE/etcd ]]; then
  log "building etcd $ETCD_VERSION (about a minute)"
  mkdir "$work/etcd" && cd "$work/etcd"
  go mod init etcdbuild >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
  go build -trimpath -ldflags "-s -w" -o "$work/etcd.bin" go.etcd.io/etcd/server/v3 >&2
  mv "$work/etcd.bin" "$CACHE/etcd"
fi

if [[ ! -x $CACHE/kube-apiserver ]]; then
  log "building kube-apiserver $K8S_VERSION (about six minutes on two cores; cached afterwards)"
  mkdir "$work/kas" && cd "$work/kas"
  go mod init kasbuild >/dev/null 2>&1
  dir=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  staging="v0.${K8S_VERSION#1.}"
  # k8s.io/kubernetes replaces its staging modules with ./staging/...; pin the published ones.
  for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$dir/go.mod"); do
    go mod edit -replace="$m=$m@$staging"
  done
  go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" >&2
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
    -o "$work/kube-apiserver.bin" k8s.io/kubernetes/cmd/kube-apiserver >&2
  mv "$work/kube-apiserver.bin" "$CACHE/kube-apiserver"
fi
log "cached in $CACHE"
echo "$CACHE"
