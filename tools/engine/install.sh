#!/usr/bin/env bash
# Install what the e2e tests' Hatchet engine needs on a Debian 12 machine (root, no Docker):
#   - Debian's PostgreSQL server binaries (apt), used for throwaway clusters
#   - hatchet-migrate / hatchet-admin / hatchet-lite v0.105.0, built from source (Go >= 1.26)
# Progress goes to stderr; stdout is only the export lines, so this works:
#   eval "$(bash tools/engine/install.sh)"
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HATCHET_ENGINE_TAG="${HATCHET_ENGINE_TAG:-v0.105.0}"
ENGINE_DIR="${MAGEFLOW_ENGINE_DIR:-$HOME/.cache/mageflow/engine}"

log() { echo "[install] $*" >&2; }

have_pg_server() {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1
}

if have_pg_server; then
  log "PostgreSQL server binaries present"
else
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { log "need root (or sudo) to apt-get install postgresql"; exit 1; }
    SUDO="sudo -n"
  fi
  # the tests start their own clusters: don't let the package create and start a 'main' one
  if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
    $SUDO mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/mageflow.conf >/dev/null
  fi
  log "installing postgresql (apt)"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >&2
  have_pg_server || { log "postgresql installed but initdb not found"; exit 1; }
fi

bash "$HERE/build-hatchet.sh" >&2

echo "export MAGEFLOW_ENGINE_BIN_DIR=$ENGINE_DIR/$HATCHET_ENGINE_TAG/bin"
echo "export HATCHET_CLIENT_EMBEDDED_BINARY_PATH=$HERE/sidecar.py"
