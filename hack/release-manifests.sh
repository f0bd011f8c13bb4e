#!/usr/bin/env bash
# Renders each kustomize overlay with meshguard's image pinned by digest, as a release
# publishes them:
#   hack/release-manifests.sh ghcr.io/meshguard/meshguard@sha256:<digest> dist/
# writes dist/meshguard-cert-manager.yaml, dist/meshguard-cert-manager-client-auth.yaml and
# dist/meshguard-self-signed.yaml.
set -euo pipefail
image=$1 out=$2
case $image in *@sha256:*) ;; *) echo "release-manifests: want an image by digest, got $image" >&2; exit 2 ;; esac
repository=${image%@*} digest=${image#*@}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
# Beside the overlays: kustomize reads resources by relative path only.
work=$(mktemp -d "$root/manifests/.release.XXXXXX")
trap 'rm -rf "$work"' EXIT
for overlay in cert-manager cert-manager-client-auth self-signed; do
  cat > "$work/kustomization.yaml" <<YAML
resources: [../overlays/$overlay]
images: [{name: $repository, digest: $digest}]
YAML
  kubectl kustomize "$work" > "$out/meshguard-$overlay.yaml"
done
