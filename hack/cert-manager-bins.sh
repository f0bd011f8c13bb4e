#!/usr/bin/env bash
# Builds cert-manager's controller and cainjector (hack/cert-manager: thin mains over
# cert-manager's published packages) and caches them by cert-manager version and by the
# mains' content. Prints the folder that holds both binaries.
#
#   CERT_MANAGER_BINS=$(hack/cert-manager-bins.sh)
#
# cert-manager's own cmd/ modules are not on the Go module proxy, and this machine reaches
# nothing else; the wrapper keeps cert-manager's dependency versions out of meshguard's go.mod.
set -euo pipefail

src=$(cd "$(dirname "$0")/cert-manager" && pwd)
version=$(sed -n 's#^[[:space:]]*github.com/cert-manager/cert-manager \(v[^ ]*\)$#\1#p' "$src/go.mod")
digest=$(cat "$src/go.mod" "$src/go.sum" "$src"/*/main.go | sha256sum | cut -c1-12)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/meshguard/cert-manager/$version-$digest

log() { echo "cert-manager-bins: $*" >&2; }

if [[ -x $CACHE/controller && -x $CACHE/cainjector ]]; then
  echo "$CACHE"
  exit 0
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [[ -x $CACHE/controller && -x $CACHE/cainjector ]]; then
  echo "$CACHE"
  exit 0
fi
log "building cert-manager $version controller and cainjector (about two minutes; cached afterwards)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$src"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/" ./... >&2
mv "$work/controller" "$work/cainjector" "$CACHE/"
# Builds of earlier versions or mains are of no further use.
find "$(dirname "$CACHE")" -mindepth 1 -maxdepth 1 -type d ! -path "$CACHE" -exec rm -rf {} +
log "cached in $CACHE"
echo "$CACHE"
