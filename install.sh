#!/usr/bin/env bash
# Builds hoop and hoop-broker in release mode and installs them into
# ~/.local/bin (or PREFIX/bin with --prefix PREFIX). Safe to run again: it
# rebuilds what changed and replaces the installed binaries.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix="$HOME/.local"

usage() {
  cat <<USAGE
usage: ./install.sh [--prefix DIR]
  Builds hoop and hoop-broker (cargo build --release) and installs them into DIR/bin
  (default: ~/.local/bin). Then try: DIR/bin/hoop demo
USAGE
}
die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix="$2"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

command -v cargo >/dev/null 2>&1 \
  || die "cargo is not installed: install Rust with rustup (https://rustup.rs), open a new shell, and run ./install.sh again"
command -v cc >/dev/null 2>&1 \
  || die "a C compiler (cc) is needed to build the TLS crypto: on Debian/Ubuntu run 'apt-get install build-essential'"

cd "$here"
echo "install.sh: building hoop and hoop-broker (release; the first build takes a few minutes)"
cargo build --release --locked -p hoop-cli -p hoop-broker
target="${CARGO_TARGET_DIR:-$here/target}"
mkdir -p "$prefix/bin"
for b in hoop hoop-broker; do
  install -m 0755 "$target/release/$b" "$prefix/bin/$b.new"
  mv -f "$prefix/bin/$b.new" "$prefix/bin/$b"
done
echo "install.sh: installed $prefix/bin/hoop and $prefix/bin/hoop-broker"
case ":$PATH:" in
  *":$prefix/bin:"*) echo "install.sh: try: hoop demo" ;;
  *) echo "install.sh: $prefix/bin is not on your PATH; run $prefix/bin/hoop demo, or add: export PATH=\"$prefix/bin:\$PATH\"" ;;
esac
