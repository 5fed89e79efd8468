#!/bin/sh
# Self-test of hoopverify: a valid export made by Go's own note/tlog code must
# pass; each tampered copy must fail with exit 1 and name the right seq.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$here/run.sh" --out "$tmp/bin" --build-only >/dev/null || exit 2
bin=$tmp/bin
good=$tmp/good.jsonl
key=$("$bin/mkfixture" -o "$good") || exit 2
failed=0 passed=0

# expect NAME WANT_RC WANT_PREFIX FILE [KEY]: run hoopverify, compare.
expect() {
	name=$1 want_rc=$2 want=$3 file=$4 k=${5:-$key}
	got=$("$bin/hoopverify" -key "$k" "$file" 2>&1)
	rc=$?
	case "$got" in
	"$want"*) ok=$([ "$rc" = "$want_rc" ] && echo 1) ;;
	*) ok= ;;
	esac
	if [ -n "$ok" ]; then
		passed=$((passed + 1))
		echo "ok   $name (exit $rc): $got"
	else
		failed=$((failed + 1))
		echo "FAILED $name: want exit $want_rc and '$want...', got exit $rc: $got"
	fi
}

# edit NAME AWK_PROGRAM: a copy of the good export through awk, where
# flip(s, j) changes the j-th byte of s (to "A", or "B" if it was "A").
edit() {
	awk 'function flip(s, j) { return substr(s, 1, j - 1) (substr(s, j, 1) == "A" ? "B" : "A") substr(s, j + 1) }
'"$2" "$good" >"$tmp/$1.jsonl"
}
ev() { echo "/^\\{\"seq\":$1,/"; }   # awk pattern of event seq N's line

expect "valid export" 0 "OK " "$good"

edit byte    "$(ev 3) { \$0 = flip(\$0, index(\$0, \"alice\")) } { print }"
expect "one byte of event 3 changed" 1 "FAIL seq 3:" "$tmp/byte.jsonl"

edit deleted "$(ev 4) { next } { print }"
expect "event 4 line deleted" 1 "FAIL seq 4:" "$tmp/deleted.jsonl"

edit dup     "$(ev 2) { print } { print }"
expect "event 2 line duplicated" 1 "FAIL seq 2:" "$tmp/dup.jsonl"

edit swapped "{ l[NR] = \$0 } $(ev 6) { a = NR } $(ev 7) { b = NR }
	END { t = l[a]; l[a] = l[b]; l[b] = t; for (i = 1; i <= NR; i++) print l[i] }"
expect "event lines 6 and 7 swapped" 1 "FAIL seq 6:" "$tmp/swapped.jsonl"

# Flip one base64 character in the middle of the first checkpoint's signature.
edit sig     'NR == 2 { $0 = flip($0, length($0) - 30) } { print }'
expect "checkpoint signature byte changed" 1 "FAIL: line 2: checkpoint 1: signature" "$tmp/sig.jsonl"

expect "wrong key" 1 "FAIL: line 2: checkpoint 1: signature" "$good" "$("$bin/mkfixture" -newkey)"

# More: a checkpoint's signed size, a body, an inclusion and a consistency
# proof, a '\r' before an event's newline, a truncated export.
edit size    'NR == 3 { sub(/\\n10\\n/, "\\n11\\n") } { print }'
expect "last checkpoint's size changed" 1 "FAIL: line 3: checkpoint 2: signature" "$tmp/size.jsonl"

edit body    '/^\{"body":/ { $0 = flip($0, index($0, "\"data\":\"") + 12) } { print }'
expect "body of event 4 changed" 1 "FAIL seq 4:" "$tmp/body.jsonl"

edit incl    '/^\{"inclusion":\{"seq":5,/ { $0 = flip($0, index($0, "\"proof\":[\"") + 10) } { print }'
expect "inclusion proof of event 5 changed" 1 "FAIL seq 5:" "$tmp/incl.jsonl"

edit cons    '/^\{"consistency":/ { $0 = flip($0, index($0, "\"proof\":[\"") + 10) } { print }'
expect "consistency proof changed" 1 "FAIL: line 4: checkpoint of size 6" "$tmp/cons.jsonl"

edit cr      "$(ev 1) { printf \"%s\\r\\n\", \$0; next } { print }"
expect "CR added to event 1's line" 1 "FAIL seq 1:" "$tmp/cr.jsonl"

edit trunc   "$(ev 9) { exit } { print }"
expect "export ends before event 9" 1 "FAIL seq 9:" "$tmp/trunc.jsonl"

expect "usage error: no such file" 2 "hoopverify: open" "$tmp/none.jsonl"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
