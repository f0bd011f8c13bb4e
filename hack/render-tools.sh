#!/usr/bin/env bash
# Installs what the access-map tests render with, as a person would see the maps: Graphviz
# and Chromium from Debian's packages (where missing), and Mermaid from the npm registry,
# cached by version. Prints the path of mermaid.min.js.
#
#   MESHGUARD_MERMAID_JS=$(hack/render-tools.sh)
set -euo pipefail

MERMAID_VERSION=${MERMAID_VERSION:-11.17.2}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/meshguard/mermaid-$MERMAID_VERSION

log() { echo "render-tools: $*" >&2; }

missing=()
command -v dot >/dev/null || missing+=(graphviz)
command -v chromium >/dev/null || missing+=(chromium)
if ((${#missing[@]})); then
  sudo=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || { log "installing ${missing[*]} needs root"; exit 1; }
    sudo=(sudo)
  fi
  log "installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

js=$CACHE/node_modules/mermaid/dist/mermaid.min.js
if [[ ! -f $js ]]; then
  command -v npm >/dev/null || { log "npm is needed to fetch Mermaid"; exit 1; }
  log "fetching mermaid@$MERMAID_VERSION from the npm registry"
  mkdir -p "$CACHE"
  npm install --silent --no-audit --no-fund --prefix "$CACHE" "mermaid@$MERMAID_VERSION" >&2
fi
echo "$js"
