#!/bin/sh
# Builds hoopverify (and mkfixture) from this directory with Go's reference
# note/tlog code from Debian, in GOPATH mode, nothing downloaded, then runs
#   hoopverify ARGS...
# Usage: run.sh [--out DIR] [--build-only] [-key VERIFIER_KEY ... EXPORT.jsonl]
#   --out DIR     put the binaries in DIR (kept) instead of a temp dir
#   --build-only  build, print the binaries' directory, run nothing
set -eu
here=$(cd "$(dirname "$0")" && pwd)
xmod=/usr/share/gocode/src/golang.org/x/mod/sumdb

out="" build_only=""
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--build-only) build_only=1; shift ;;
	*) break ;;
	esac
done

if ! command -v go >/dev/null 2>&1; then
	echo "run.sh: no 'go' command. Install Debian's Go and x/mod sources:" >&2
	echo "  apt-get install golang-go golang-golang-x-mod-dev" >&2
	exit 2
fi
if [ ! -f "$xmod/note/note.go" ] || [ ! -f "$xmod/tlog/tlog.go" ]; then
	echo "run.sh: golang.org/x/mod sources not found in $xmod. Install:" >&2
	echo "  apt-get install golang-golang-x-mod-dev" >&2
	exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -n "$out" ] || out=$tmp/bin
mkdir -p "$out" "$tmp/gopath"
out=$(cd "$out" && pwd)

# GOPATH mode only: modules off, no proxy, no network, our own caches.
export GO111MODULE=off GOPROXY=off GOFLAGS= GONOSUMDB= GOSUMDB=off CGO_ENABLED=0
export GOPATH="/usr/share/gocode:$tmp/gopath"
export GOCACHE="${XDG_CACHE_HOME:-${HOME:-$tmp}/.cache}/hoop-verifier-go"
(cd "$here" && go build -o "$out/hoopverify" . && cd mkfixture && go build -o "$out/mkfixture" .)

if [ -n "$build_only" ]; then
	echo "$out"
	exit 0
fi
set +e
"$out/hoopverify" "$@"
