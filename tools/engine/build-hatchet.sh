#!/usr/bin/env bash
# Build the classic Hatchet engine binaries (hatchet-migrate, hatchet-admin, hatchet-lite)
# from source through the Go module proxy, into
#   ${MAGEFLOW_ENGINE_DIR:-$HOME/.cache/mageflow/engine}/<tag>/bin
# Idempotent: exits immediately when the binaries of this tag are already there.
#
# Why not the official sidecar (github.com/hatchet-dev/hatchet-embedded, which hatchet-sdk's
# `Hatchet.from_embedded()` downloads)? Only package registries are reachable from our machines:
# GitHub release downloads are not, and the Go module proxy answers 403 for every version of
# hatchet-embedded. tools/engine/sidecar.py re-implements the sidecar's command line on top of
# these three binaries instead, so the SDK's embedded path works unchanged.
#
# Why v0.105.0? It is the newest tag of github.com/hatchet-dev/hatchet that the module proxy
# serves (v0.106.0 and later answer 403 for .mod), and it speaks the v1 protocol used by
# hatchet-sdk 1.x. `go install ...@v0.105.0` does not work either (it reads @v/list, which is
# 403), so we build from a tiny wrapper module that requires the tag; its go.mod/go.sum are
# committed in tools/engine/hatchet-build/ so the hashes are pinned and no checksum-database
# lookup is needed.
#
# Needs: Go >= 1.26 on PATH (hatchet v0.105.0's go.mod says `go 1.26`). A cold build takes
# several minutes on 2 cores and fills ~2 GB of Go caches (GOMODCACHE/GOCACHE, reused later).
set -euo pipefail

HATCHET_ENGINE_TAG="${HATCHET_ENGINE_TAG:-v0.105.0}"
ENGINE_DIR="${MAGEFLOW_ENGINE_DIR:-$HOME/.cache/mageflow/engine}"
OUT="$ENGINE_DIR/$HATCHET_ENGINE_TAG"
BIN="$OUT/bin"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BINARIES=(hatchet-migrate hatchet-admin hatchet-lite)

log() { echo "[build-hatchet] $*" >&2; }

built() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
  [[ "$(cat "$BIN/.tag" 2>/dev/null)" == "$HATCHET_ENGINE_TAG" ]]
}

if built && [[ "${1:-}" != "--force" ]]; then
  log "hatchet $HATCHET_ENGINE_TAG already built in $BIN"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  for d in /usr/local/go/bin /usr/lib/go/bin "$HOME/go/bin"; do
    [[ -x "$d/go" ]] && export PATH="$d:$PATH" && break
  done
fi
command -v go >/dev/null 2>&1 || { log "Go (>= 1.26) is required but not on PATH"; exit 1; }

mkdir -p "$OUT"
# one build at a time per tag (several test sessions may call this concurrently)
exec 9>"$OUT/.build.lock"
flock 9
if built && [[ "${1:-}" != "--force" ]]; then
  log "hatchet $HATCHET_ENGINE_TAG built by a concurrent run in $BIN"
  exit 0
fi

SRC="$OUT/src"
rm -rf "$SRC"
mkdir -p "$SRC"
if [[ "$HATCHET_ENGINE_TAG" == "v0.105.0" && -f "$HERE/hatchet-build/go.sum" ]]; then
  cp "$HERE/hatchet-build/go.mod" "$HERE/hatchet-build/go.sum" "$SRC/"
  modflag=-mod=readonly
else
  # another tag: resolve its dependency hashes now (checksum-database lookups for hatchet-dev
  # modules are refused, so skip them for that prefix only)
  printf 'module mageflow.local/hatchetbuild\n\ngo 1.26\n\nrequire github.com/hatchet-dev/hatchet %s\n' \
    "$HATCHET_ENGINE_TAG" >"$SRC/go.mod"
  export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/hatchet-dev/*"
  modflag=-mod=mod
fi

log "building hatchet $HATCHET_ENGINE_TAG ($(go version | cut -d' ' -f3)) into $BIN; cold builds take minutes"
start=$(date +%s)
tmpbin="$OUT/bin.tmp.$$"
rm -rf "$tmpbin"
mkdir -p "$tmpbin"
pkgs=()
for b in "${BINARIES[@]}"; do pkgs+=("github.com/hatchet-dev/hatchet/cmd/$b"); done
(
  cd "$SRC"
  export GOTOOLCHAIN=local GOFLAGS="$modflag -buildvcs=false"
  go build -trimpath -ldflags "-s -w -X main.Version=$HATCHET_ENGINE_TAG" -o "$tmpbin/" "${pkgs[@]}"
)
echo "$HATCHET_ENGINE_TAG" >"$tmpbin/.tag"
rm -rf "$BIN"
mv "$tmpbin" "$BIN"
log "built in $(( $(date +%s) - start ))s: $(ls "$BIN" | tr '\n' ' ')"
