#!/usr/bin/env bash
# Installs the real MCP components that hoop's end-to-end tests spawn:
#   - tests/node_modules  (npm ci from tests/package-lock.json: server-everything,
#                          the conformance suite, the TypeScript SDK client)
#   - tests/.venv         (python3 -m venv + pip install -r tests/requirements.txt:
#                          the Python SDK mcp==2.3.0 for the fixtures and clients)
#   - Go and golang.org/x/mod from Debian (golang-go, golang-golang-x-mod-dev):
#                          the reference verifier of the audit export
#                          (tests/verifier-go), built in GOPATH mode
# Idempotent: each half is skipped when a stamp shows it already matches its lock
# file. Set HOOP_SETUP_FORCE=1 to reinstall both. Needs only the npm registry and
# PyPI. Usage: bash tests/setup.sh   (from anywhere)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

die() { echo "tests/setup.sh: error: $*" >&2; exit 1; }
log() { echo "tests/setup.sh: $*" >&2; }

for tool in node npm python3; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not on PATH (need Node >= 20 with npm, and Python >= 3.10)"
done

node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "Node >= 20 required, found $(node --version)"
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "Python >= 3.10 required, found $(python3 --version 2>&1)"
python3 -c 'import venv, ensurepip' 2>/dev/null \
  || die "python3 lacks venv/ensurepip (on Debian: apt-get install python3-venv)"

hash_of() { python3 -c 'import hashlib,sys; print(hashlib.sha256(b"".join(open(p,"rb").read() for p in sys.argv[1:])).hexdigest())' "$@"; }

# ---- npm -------------------------------------------------------------------
[ -f package-lock.json ] || die "tests/package-lock.json missing"
npm_want="$(hash_of package.json package-lock.json)-node$node_major"
npm_stamp="node_modules/.hoop-setup-stamp"
if [ "${HOOP_SETUP_FORCE:-0}" != 1 ] && [ -f "$npm_stamp" ] && [ "$(cat "$npm_stamp")" = "$npm_want" ] \
   && [ -f node_modules/@modelcontextprotocol/server-everything/dist/index.js ]; then
  log "node_modules is current, skipping npm ci"
else
  log "npm ci in $here"
  npm ci --no-audit --no-fund --loglevel=error || die "npm ci failed"
  echo "$npm_want" > "$npm_stamp"
fi

# ---- Python venv -----------------------------------------------------------
py_want="$(hash_of requirements.txt)-$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
py_stamp=".venv/.hoop-setup-stamp"
if [ "${HOOP_SETUP_FORCE:-0}" != 1 ] && [ -f "$py_stamp" ] && [ "$(cat "$py_stamp")" = "$py_want" ] \
   && [ -x .venv/bin/python ] && .venv/bin/python -c 'import mcp' 2>/dev/null; then
  log "tests/.venv is current, skipping pip install"
else
  if [ ! -x .venv/bin/python ]; then
    log "creating tests/.venv"
    python3 -m venv .venv || die "python3 -m venv failed"
  fi
  log "pip install -r requirements.txt into tests/.venv"
  .venv/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt \
    || die "pip install -r tests/requirements.txt failed"
  echo "$py_want" > "$py_stamp"
fi

# ---- Go reference verifier (Debian packages) ------------------------------
if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/golang.org/x/mod/sumdb/tlog ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "apt-get install golang-go golang-golang-x-mod-dev"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-go golang-golang-x-mod-dev >/dev/null \
      || die "apt-get install golang-go golang-golang-x-mod-dev failed"
  else
    die "the audit tests need Go's reference code: apt-get install golang-go golang-golang-x-mod-dev"
  fi
fi

log "ok: node $(node --version), $(.venv/bin/python --version), $(go version)"
