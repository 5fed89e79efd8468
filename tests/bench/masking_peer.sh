#!/usr/bin/env bash
# hoop's masking engine side by side with Microsoft Presidio's analyzer on
# the labelled corpus (tests/corpus/corpus.jsonl): precision and recall per
# type, and MB/s on one core, in one table (docs/masking.md publishes it).
# A tool, not a test: CI does not run it.
#
# Usage: tests/bench/masking_peer.sh [--misses]
#   --misses   also list every miss and false positive of both engines
# Makes tests/bench/.venv-presidio (PyPI presidio-analyzer and its
# dependencies, pinned in tests/bench/presidio-requirements.txt), runs
# broker/masking/examples/corpus_run.rs (release build) for hoop's findings
# and timing, then tests/bench/masking_peer.py, which scores both with one
# scorer and times Presidio. How Presidio is run (its pattern recognizers
# and context enhancer on spaCy's blank English tokenizer: no NER model can
# be downloaded here) is said at the top of masking_peer.py.
# Environment: CARGO_TARGET_DIR (default: <repo>/target).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
run() { printf '+ %s\n' "$(printf '%q ' "$@")" >&2; "$@"; }

case "${1:-}" in
  -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
esac

venv="$here/.venv-presidio"
stamp="$venv/.stamp"
if [ ! -f "$stamp" ] || ! cmp -s "$stamp" "$here/presidio-requirements.txt"; then
  run python3 -m venv "$venv"
  run "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/presidio-requirements.txt"
  cp "$here/presidio-requirements.txt" "$stamp"
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd "$root"
run cargo run --locked --release --quiet -p hoop-masking --example corpus_run -- tests/corpus/corpus.jsonl > "$scratch/hoop.jsonl"
run "$venv/bin/python" "$here/masking_peer.py" --corpus tests/corpus/corpus.jsonl --hoop "$scratch/hoop.jsonl" "$@"
