#!/usr/bin/env bash
# End-to-end latency benchmark of hoop: what `hoop connect` + `hoop-broker`
# add to one MCP tools/call round trip. A tool, not a test: CI does not run it.
#
# Measures tools/call latency (p50/p90/p99) and throughput with wrk (closed
# loop, keep-alive; one request in flight per connection) at each
# concurrency in BENCH_CONNS, for BENCH_DURATION seconds after a
# BENCH_WARMUP-second warm-up that is thrown away, in these configurations:
#
#   floor-rust   hyper server answering a fixed JSON (the loopback HTTP floor)
#   floor-node   node:http server answering a fixed JSON (floor for c/d)
#   a demo       `hoop demo-server`, 2026-07-28 stateless tools/call echo
#   b hoop-demo  the same through hoop connect -> QUIC -> hoop-broker
#   c every      @modelcontextprotocol/server-everything (streamable HTTP,
#                handshake era, one session; answers in SSE)
#   d hoop-every the same through hoop (session issued by hoop)
#   hoop-demo-nomask  config b through a second broker whose masking is
#                off ([masking] enabled = false): hoop-demo minus this is
#                what the masking layer costs, in the same run
#   hoop-demo-unrecorded  config b through a third broker, masking off and
#                built with the Cargo feature bench-unrecorded (its audit
#                layer records nothing): hoop-demo-nomask minus this is
#                what recording costs, in the same run
#   hoop-demo-pg config b with the broker's store and audit log in
#                PostgreSQL (BENCH_POSTGRES, default the machine's own at
#                127.0.0.1:5432, database test; a schema of this run);
#                only when asked for with --only
#   hoop-demo-pg2  two such brokers on one PostgreSQL schema (one store,
#                one audit log, one signing key), each behind its own hoop
#                connect; the connections are split between them (two wrk
#                at once, half the connections each; at 1 connection, one
#                each) and the row reports their sum of req/s and the
#                slower of their percentiles; only with --only
#   proxy2-demo  config a behind two do-nothing hyper proxies in a row
#                (hoop-bench-floor --forward, one thread each): the floor
#                of any design with two process hops on this machine
#
# Usage: tests/bench/run.sh [--skip-build] [--only a,b,...] [--keep] [--diag-nodelay]
#   --skip-build    use the release binaries already in the target dir
#   --only LIST     comma-separated config names (floor-rust,floor-node,demo,
#                   proxy2-demo,hoop-demo,hoop-demo-nomask,
#                   hoop-demo-unrecorded,every,hoop-every,hoop-demo-pg,
#                   hoop-demo-pg2);
#                   default all
#   --keep          keep the scratch dir (logs, broker state) after the run
#   --diag-nodelay  also measure hoop-demo-nd / hoop-every-nd: the same hoop
#                   connect run under LD_PRELOAD=diag/nodelay_preload.c, which
#                   sets TCP_NODELAY on the sockets it accepts (needs gcc).
#                   A diagnostic for Nagle's algorithm, not a configuration.
# Environment: BENCH_DURATION (10), BENCH_WARMUP (2), BENCH_CONNS ("1 16"),
#   BENCH_ROUNDS (1: how many times every config is measured, in turn, one
#   round after the other; with more than one, each "added" figure is the
#   median over the rounds of the difference within a round, with its
#   range, so that slow drift of the machine falls on both sides alike),
#   BENCH_WRK_THREADS (1), BENCH_HOST (127.0.0.1; loopback only),
#   BENCH_PORT_BASE (14400: ports BASE..BASE+14 and BASE+33..BASE+38 must be free),
#   BENCH_PAYLOAD (bytes; unset: the demo configs call echo "hi"; set: they
#   call the demo server's big_payload for an answer of that many text
#   bytes, e.g. 4096 or 1048576, to measure what a response's size costs),
#   BENCH_AUDIT (fsync, the default, or os: the broker's audit durability;
#   none: no [audit] section, for builds from before the audit log),
#   CARGO_TARGET_DIR (default: <repo>/target),
#   BENCH_BIN_DIR (take hoop, hoop-broker and hoop-bench-floor, and for
#   hoop-demo-unrecorded hoop-broker-unrecorded, from this
#   directory instead of building them; implies --skip-build).
# Needs: cargo, wrk, curl, node (>= 20); bash tests/setup.sh for configs c/d.
# Prints each command it runs, then a table; results also land in
# $BENCH_OUT (default: <scratch>/results.tsv, printed at the end). Each row
# also carries "other cpu%", the machine's CPU spent on anything but this
# benchmark during that run: on a shared machine, keep only low ones.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

die() { echo "bench: error: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }
# Prints a command exactly as run, then runs it.
run() { printf '+ %s\n' "$(printf '%q ' "$@")" >&2; "$@"; }

skip_build=0
only_given=0
only="floor-rust,floor-node,demo,proxy2-demo,hoop-demo,hoop-demo-nomask,hoop-demo-unrecorded,every,hoop-every"
keep=0
diag_nodelay=0
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-build) skip_build=1 ;;
    --only) shift; only="${1:?--only needs a list}"; only_given=1 ;;
    --keep) keep=1 ;;
    --diag-nodelay) diag_nodelay=1 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
wants() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# The diagnostic configs ride along with the config they shadow.
wants_nd() { [ "$diag_nodelay" = 1 ] && wants "$1"; }

duration="${BENCH_DURATION:-10}"
warmup="${BENCH_WARMUP:-2}"
conns="${BENCH_CONNS:-1 16}"
wrk_threads="${BENCH_WRK_THREADS:-1}"
rounds="${BENCH_ROUNDS:-1}"
host="${BENCH_HOST:-127.0.0.1}"
base="${BENCH_PORT_BASE:-14400}"
for n in "$duration" "$warmup" "$wrk_threads" "$base" "$rounds" $conns; do
  [[ "$n" =~ ^[0-9]+$ ]] || die "not a number: $n"
done
if [ "$duration" -lt 1 ] || [ "$duration" -gt 300 ]; then die "BENCH_DURATION must be 1..300 s"; fi
[ "$warmup" -le 60 ] || die "BENCH_WARMUP must be at most 60 s"
if [ "$rounds" -lt 1 ] || [ "$rounds" -gt 20 ]; then die "BENCH_ROUNDS must be 1..20"; fi

# ---- loopback only --------------------------------------------------------
is_loopback() {
  case "$1" in
    localhost|::1|\[::1\]) return 0 ;;
  esac
  [[ "$1" =~ ^127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || return 1
  local o
  for o in "${BASH_REMATCH[@]:1}"; do [ "$o" -le 255 ] || return 1; done
}
# Every URL handed to curl or wrk goes through this.
check_url() {
  local rest="${1#http://}" h
  [ "$rest" != "$1" ] || die "refusing non-http URL $1"
  h="${rest%%/*}"
  if [[ "$h" == \[* ]]; then h="${h%%]*}]"; else h="${h%:*}"; fi
  is_loopback "$h" || die "refusing to send traffic to non-loopback address $h ($1)"
}
is_loopback "$host" || die "BENCH_HOST=$host is not a loopback address; this benchmark only runs on 127.0.0.0/8 or ::1"
[ "$host" = "127.0.0.1" ] || [[ "$host" =~ ^127\. ]] || die "only IPv4 loopback (127.x.y.z) is supported as BENCH_HOST"

floor_port=$((base + 0)); node_floor_port=$((base + 1)); demo_port=$((base + 2)); every_port=$((base + 3))
hoop_demo_port=$((base + 4)); hoop_every_port=$((base + 5)); broker_port=$((base + 33))
nomask_demo_port=$((base + 10)); nomask_broker_port=$((base + 34))
unrec_demo_port=$((base + 11)); unrec_broker_port=$((base + 35))
pg_demo_port=$((base + 12)); pg_broker_port=$((base + 36))
pg2a_demo_port=$((base + 13)); pg2a_broker_port=$((base + 37))
pg2b_demo_port=$((base + 14)); pg2b_broker_port=$((base + 38))
nd_demo_port=$((base + 6)); nd_every_port=$((base + 7))
proxy_a_port=$((base + 8)); proxy_b_port=$((base + 9))

for tool in curl wrk node; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not on PATH (apt-get install wrk curl; Node >= 20)"
done
port_busy() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }
for p in $floor_port $node_floor_port $demo_port $every_port $hoop_demo_port $hoop_every_port $nd_demo_port $nd_every_port $proxy_a_port $proxy_b_port $nomask_demo_port $broker_port $nomask_broker_port $unrec_demo_port $unrec_broker_port; do
  port_busy "$p" && die "port $p on $host is in use; set BENCH_PORT_BASE to a free range"
done

# ---- processes: everything started here is stopped on exit ---------------
scratch="$(mktemp -d "${TMPDIR:-/tmp}/hoop-bench.XXXXXX")"
pids=()
cleanup() {
  local rc=$? pid i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid="${pids[$i]}"
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  # The PostgreSQL schemas this run made (store and audit log).
  for schema in "${pg_schemas[@]}"; do
    psql "$pg_url" -qc "DROP SCHEMA IF EXISTS $schema CASCADE; DROP SCHEMA IF EXISTS ${schema}_audit CASCADE;" >/dev/null 2>&1 ||
      log "could not drop the PostgreSQL schemas $schema and ${schema}_audit"
  done
  if [ "$keep" = 1 ] || [ "$rc" != 0 ]; then
    log "scratch dir kept: $scratch"
  else
    rm -rf "$scratch"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -A pid=()
pg_schemas=()
pg_url="${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"
# start NAME CMD...: runs CMD in the background, output to $scratch/NAME.log.
start() {
  local name="$1"; shift
  printf '+ %s > %s 2>&1 &\n' "$(printf '%q ' "$@")" "$scratch/$name.log" >&2
  "$@" >"$scratch/$name.log" 2>&1 &
  pids+=("$!")
  pid[$name]=$!
}

# wait_http URL PID: until anything answers HTTP there (bounded: 15 s).
wait_http() {
  check_url "$1"
  local i
  for i in $(seq 1 150); do
    if curl -s -o /dev/null --max-time 1 "$1"; then return 0; fi
    kill -0 "$2" 2>/dev/null || die "the process meant to serve $1 exited (logs in $scratch)"
    sleep 0.1
  done
  die "nothing answered at $1 within 15 s (logs in $scratch)"
}

# ---- build ----------------------------------------------------------------
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bin="${BENCH_BIN_DIR:-$target_dir/release}"
source_rev="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$root" diff --quiet HEAD 2>/dev/null || source_rev="$source_rev+uncommitted-changes"
if [ -n "${BENCH_BIN_DIR:-}" ]; then
  provenance="prebuilt binaries from $bin"
elif [ "$skip_build" = 0 ]; then
  (cd "$root" && run cargo build --release -p hoop-cli -p hoop-broker)
  if wants hoop-demo-unrecorded; then
    # In a target dir of its own, so the non-recording build can never
    # stand in for the plain hoop-broker.
    (cd "$root" && CARGO_TARGET_DIR="$target_dir/bench-unrecorded" run cargo build --release -p hoop-broker --features bench-unrecorded)
    run cp "$target_dir/bench-unrecorded/release/hoop-broker" "$bin/hoop-broker-unrecorded"
  fi
  run cargo build --release --manifest-path "$here/floor/Cargo.toml"
  provenance="built from $root at $source_rev"
else
  provenance="binaries already in $bin (--skip-build; tree now at $source_rev)"
fi
for b in hoop hoop-broker hoop-bench-floor; do
  [ -x "$bin/$b" ] || die "$bin/$b is missing (run without --skip-build)"
done
if wants hoop-demo-unrecorded && [ ! -x "$bin/hoop-broker-unrecorded" ]; then
  [ "$only_given" = 1 ] && die "$bin/hoop-broker-unrecorded is missing (run without --skip-build, or leave out hoop-demo-unrecorded)"
  log "no $bin/hoop-broker-unrecorded: hoop-demo-unrecorded left out"
  only="$(echo ",$only," | sed 's/,hoop-demo-unrecorded,/,/; s/^,//; s/,$//')"
fi

# ---- requests -------------------------------------------------------------
stateless_body='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}'
every_body='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}'
init_body='{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}'
initialized_body='{"jsonrpc":"2.0","method":"notifications/initialized"}'
accept='Accept: application/json, text/event-stream'
# What the demo-server configs call: echo "hi", or big_payload for a sized answer.
payload="${BENCH_PAYLOAD:-}"
demo_body="$stateless_body"; demo_tool=echo; demo_expect='"text":"hi"'
if [ -n "$payload" ]; then
  [[ "$payload" =~ ^[0-9]+$ ]] && [ "$payload" -ge 16 ] && [ "$payload" -le 67108864 ] \
    || die "BENCH_PAYLOAD must be a byte count, 16..67108864"
  demo_body="${stateless_body/\"name\":\"echo\",\"arguments\":{\"text\":\"hi\"\}/\"name\":\"big_payload\",\"arguments\":{\"bytes\":$payload\}}"
  demo_tool=big_payload; demo_expect='"text":"abcdefghij'
fi

# post URL BODY [extra curl args...]: prints the response body.
post() {
  local url="$1" body="$2"; shift 2
  check_url "$url"
  curl -sS --max-time 10 -X POST "$url" -H 'Content-Type: application/json' -H "$accept" "$@" --data-binary "$body"
}

# handshake URL: initialize + notifications/initialized; prints the session id.
handshake() {
  local url="$1" hdrs="$scratch/init.$RANDOM.headers" sid
  check_url "$url"
  printf '+ %s\n' "curl -sS -D $hdrs -X POST $url -H 'Content-Type: application/json' -H '$accept' -H 'MCP-Protocol-Version: 2025-11-25' --data-binary '$init_body'" >&2
  curl -sS --max-time 10 -D "$hdrs" -o "$hdrs.body" -X POST "$url" -H 'Content-Type: application/json' \
    -H "$accept" -H 'MCP-Protocol-Version: 2025-11-25' --data-binary "$init_body"
  sid="$(tr -d '\r' <"$hdrs" | awk -F': *' 'tolower($1)=="mcp-session-id" {print $2}' | tail -n1)"
  [ -n "$sid" ] || die "initialize at $url returned no Mcp-Session-Id: $(cat "$hdrs" "$hdrs.body")"
  grep -q '"protocolVersion"' "$hdrs.body" || die "initialize at $url did not succeed: $(cat "$hdrs.body")"
  printf '+ %s\n' "curl -sS -X POST $url ... -H 'Mcp-Session-Id: $sid' --data-binary '$initialized_body'" >&2
  post "$url" "$initialized_body" -H 'MCP-Protocol-Version: 2025-11-25' -H "Mcp-Session-Id: $sid" >/dev/null
  echo "$sid"
}

# ---- start the servers ----------------------------------------------------
configs=()
if wants floor-rust; then
  start floor "$bin/hoop-bench-floor" "$floor_port"
fi
if wants floor-node; then
  start node-floor node -e '
const body = JSON.stringify({jsonrpc:"2.0",id:1,result:{content:[{type:"text",text:"hi"}],isError:false}});
require("node:http").createServer((req, res) => {
  req.resume();
  req.on("end", () => { res.writeHead(200, {"content-type": "application/json"}); res.end(body); });
}).listen(Number(process.argv[1]), "127.0.0.1");' "$node_floor_port"
fi
if wants demo || wants hoop-demo || wants hoop-demo-nomask || wants hoop-demo-unrecorded || wants hoop-demo-pg || wants hoop-demo-pg2 || wants proxy2-demo; then
  start demo "$bin/hoop" demo-server --port "$demo_port"
fi
if wants proxy2-demo; then
  # wrk -> proxy A -> proxy B -> demo server.
  start proxy-b "$bin/hoop-bench-floor" "$proxy_b_port" --forward "http://$host:$demo_port/mcp"
  start proxy-a "$bin/hoop-bench-floor" "$proxy_a_port" --forward "http://$host:$proxy_b_port/mcp"
fi
if wants every || wants hoop-every; then
  every_js="$root/tests/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
  [ -f "$every_js" ] || die "server-everything is not installed: run bash tests/setup.sh"
  # server-everything logs a line per request on stdout; that goes to its log file.
  start every env PORT="$every_port" node --require "$root/tests/fixtures/loopback_only.cjs" "$every_js" streamableHttp
fi
# start_broker NAME PORT EXTRA: a dev broker for the demo server and
# server-everything, EXTRA appended to its config; sets pin[NAME] and
# token[NAME] (its alice token file) once it is up.
declare -A pin=() token=()
start_broker() { # name port extra-config [binary] [more [audit] keys]
  local name="$1" port="$2" extra="$3" broker_bin="${4:-$bin/hoop-broker}" audit_more="${5:-}" audit_section="" p=""
  case "${BENCH_AUDIT:-fsync}" in
    fsync|os) audit_section="[audit]
durability = \"${BENCH_AUDIT:-fsync}\"
$audit_more" ;;
    none) ;;
    *) die "BENCH_AUDIT must be fsync, os or none" ;;
  esac
  cat >"$scratch/$name.toml" <<EOF
listen = "$host:$port"
$extra
$audit_section

[targets.demo]
transport = "http"
url = "http://$host:$demo_port/mcp"

[targets.everything]
transport = "http"
url = "http://$host:$every_port/mcp"
EOF
  log "broker config $scratch/$name.toml:"; sed 's/^/    /' "$scratch/$name.toml" >&2
  # HOOP_BENCH_UNRECORDED: only a bench-unrecorded build reads it, and
  # only the one broker meant to run unrecorded gets it.
  local unrecorded=0
  [ "$broker_bin" = "$bin/hoop-broker-unrecorded" ] && unrecorded=1
  start "$name" env HOOP_BENCH_UNRECORDED="$unrecorded" "$broker_bin" dev --config "$scratch/$name.toml" --state-dir "$scratch/$name-state"
  for _ in $(seq 1 150); do
    p="$(grep -o 'sha256:[0-9a-fA-F]\{64\}' "$scratch/$name.log" | head -n1 || true)"
    [ -n "$p" ] && [ -f "$scratch/$name-state/tokens/alice.token" ] && break
    kill -0 "${pid[$name]}" 2>/dev/null || die "hoop-broker ($name) exited: $(cat "$scratch/$name.log")"
    sleep 0.1
  done
  [ -n "$p" ] || die "hoop-broker ($name) printed no certificate fingerprint: $(cat "$scratch/$name.log")"
  [ -f "$scratch/$name-state/tokens/alice.token" ] || die "no token file at $scratch/$name-state/tokens/alice.token: $(cat "$scratch/$name.log")"
  pin[$name]="$p"; token[$name]="$scratch/$name-state/tokens/alice.token"
}
# via NAME PORT: the `hoop connect` flags for broker NAME on PORT.
via() {
  echo "--broker $host:$2 --pin ${pin[$1]} --token-file ${token[$1]} --no-local-auth"
}
if wants hoop-demo || wants hoop-every || wants hoop-demo-nomask || wants hoop-demo-unrecorded || wants hoop-demo-pg || wants hoop-demo-pg2; then
  # An empty config file, so no user profile leaks in.
  : >"$scratch/hoop-config.toml"
  export HOOP_CONFIG="$scratch/hoop-config.toml"
  unset HOOP_BROKER HOOP_PROFILE HOOP_CA_FILE HOOP_PIN HOOP_SERVER_NAME HOOP_TOKEN_FILE
fi
if wants hoop-demo || wants hoop-every; then
  start_broker broker "$broker_port" ""
  read -r -a connect_args <<<"$(via broker "$broker_port")"
  if wants hoop-demo; then
    start hoop-demo "$bin/hoop" connect mcp demo --port "$hoop_demo_port" "${connect_args[@]}"
  fi
  if wants hoop-every; then
    start hoop-every "$bin/hoop" connect mcp everything --port "$hoop_every_port" "${connect_args[@]}"
  fi
  if [ "$diag_nodelay" = 1 ]; then
    command -v gcc >/dev/null 2>&1 || die "--diag-nodelay needs gcc"
    run gcc -shared -fPIC -O2 -o "$scratch/nodelay_preload.so" "$here/diag/nodelay_preload.c" -ldl
    if wants_nd hoop-demo; then
      start hoop-demo-nd env LD_PRELOAD="$scratch/nodelay_preload.so" "$bin/hoop" connect mcp demo --port "$nd_demo_port" "${connect_args[@]}"
    fi
    if wants_nd hoop-every; then
      start hoop-every-nd env LD_PRELOAD="$scratch/nodelay_preload.so" "$bin/hoop" connect mcp everything --port "$nd_every_port" "${connect_args[@]}"
    fi
  fi
fi
if wants hoop-demo-nomask; then
  # The same broker with masking off: what the masking layer costs.
  start_broker broker-nomask "$nomask_broker_port" "[masking]
enabled = false"
  read -r -a nomask_args <<<"$(via broker-nomask "$nomask_broker_port")"
  start hoop-demo-nomask "$bin/hoop" connect mcp demo --port "$nomask_demo_port" "${nomask_args[@]}"
fi
if wants hoop-demo-pg; then
  # The same broker as hoop-demo, its store and audit log in PostgreSQL
  # (BENCH_POSTGRES, default the machine's own), in a schema of this run.
  pg_schema="bench_$$"; pg_schemas+=("$pg_schema")
  start_broker broker-pg "$pg_broker_port" "store = { postgres = \"$pg_url\", schema = \"$pg_schema\" }" \
    "$bin/hoop-broker" "signing_key = \"$scratch/pg-audit-signing.key\""
  read -r -a pg_args <<<"$(via broker-pg "$pg_broker_port")"
  start hoop-demo-pg "$bin/hoop" connect mcp demo --port "$pg_demo_port" "${pg_args[@]}"
fi
if wants hoop-demo-pg2; then
  # Two replicas of hoop-demo-pg on one schema: one store, one audit log,
  # one signing key; each behind its own hoop connect.
  pg2_schema="bench2_$$"; pg_schemas+=("$pg2_schema")
  for r in a b; do
    bp="pg2${r}_broker_port"; dp="pg2${r}_demo_port"
    start_broker "broker-pg2$r" "${!bp}" "store = { postgres = \"$pg_url\", schema = \"$pg2_schema\" }" \
      "$bin/hoop-broker" "signing_key = \"$scratch/pg2-audit-signing.key\""
    read -r -a pg2_args <<<"$(via "broker-pg2$r" "${!bp}")"
    start "hoop-demo-pg2$r" "$bin/hoop" connect mcp demo --port "${!dp}" "${pg2_args[@]}"
  done
fi
if wants hoop-demo-unrecorded; then
  # Masking off as well: hoop-demo-nomask minus this is the audit layer.
  start_broker broker-unrecorded "$unrec_broker_port" "[masking]
enabled = false" "$bin/hoop-broker-unrecorded"
  read -r -a unrec_args <<<"$(via broker-unrecorded "$unrec_broker_port")"
  start hoop-demo-unrecorded "$bin/hoop" connect mcp demo --port "$unrec_demo_port" "${unrec_args[@]}"
fi

# ---- wait, then check each answers the echo -------------------------------
declare -A url body proto session mmethod mname pidof url2=()
add() { # name url body proto session mcp-method mcp-name server-pid
  configs+=("$1"); url[$1]="$2"; body[$1]="$3"; proto[$1]="$4"; session[$1]="$5"
  mmethod[$1]="$6"; mname[$1]="$7"; pidof[$1]="$8"
}
expect_echo() { # name response expected-substring
  case "$2" in
    *"$3"*) log "$1: echo ok" ;;
    *) die "$1 did not answer the echo; got: $2" ;;
  esac
}

if wants floor-rust; then
  u="http://$host:$floor_port/mcp"; wait_http "$u" "${pid[floor]}"
  expect_echo floor-rust "$(post "$u" "$stateless_body")" '"text":"hi"'
  add floor-rust "$u" "$stateless_body" "" "" "" "" "${pid[floor]}"
fi
if wants floor-node; then
  u="http://$host:$node_floor_port/mcp"; wait_http "$u" "${pid[node-floor]}"
  expect_echo floor-node "$(post "$u" "$stateless_body")" '"text":"hi"'
  add floor-node "$u" "$stateless_body" "" "" "" "" "${pid[node-floor]}"
fi
stateless_hdrs=(-H 'MCP-Protocol-Version: 2026-07-28' -H 'Mcp-Method: tools/call' -H "Mcp-Name: $demo_tool")
if wants demo || wants hoop-demo || wants hoop-demo-nomask || wants hoop-demo-unrecorded || wants proxy2-demo; then
  wait_http "http://$host:$demo_port/mcp" "${pid[demo]}"
fi
if wants demo; then
  u="http://$host:$demo_port/mcp"
  printf '+ %s\n' "curl -sS -X POST $u -H 'Content-Type: application/json' -H '$accept' -H 'MCP-Protocol-Version: 2026-07-28' -H 'Mcp-Method: tools/call' -H 'Mcp-Name: $demo_tool' --data-binary '$demo_body'" >&2
  r="$(post "$u" "$demo_body" "${stateless_hdrs[@]}")"; echo "    ${r:0:300}" >&2
  expect_echo demo "$r" "$demo_expect"
  add demo "$u" "$demo_body" 2026-07-28 "" tools/call "$demo_tool" "${pid[demo]}"
fi
if wants proxy2-demo; then
  wait_http "http://$host:$proxy_b_port/mcp" "${pid[proxy-b]}"
  u="http://$host:$proxy_a_port/mcp"; wait_http "$u" "${pid[proxy-a]}"
  r="$(post "$u" "$demo_body" "${stateless_hdrs[@]}")"; echo "    ${r:0:300}" >&2
  expect_echo proxy2-demo "$r" "$demo_expect"
  add proxy2-demo "$u" "$demo_body" 2026-07-28 "" tools/call "$demo_tool" "${pid[demo]}"
fi
if wants hoop-demo; then
  u="http://$host:$hoop_demo_port/mcp"; wait_http "$u" "${pid[hoop-demo]}"
  r="$(post "$u" "$demo_body" "${stateless_hdrs[@]}")"; echo "    ${r:0:300}" >&2
  expect_echo hoop-demo "$r" "$demo_expect"
  add hoop-demo "$u" "$demo_body" 2026-07-28 "" tools/call "$demo_tool" "${pid[demo]}"
fi
if wants hoop-demo-nomask; then
  u="http://$host:$nomask_demo_port/mcp"; wait_http "$u" "${pid[hoop-demo-nomask]}"
  r="$(post "$u" "$demo_body" "${stateless_hdrs[@]}")"; echo "    ${r:0:300}" >&2
  expect_echo hoop-demo-nomask "$r" "$demo_expect"
  add hoop-demo-nomask "$u" "$demo_body" 2026-07-28 "" tools/call "$demo_tool" "${pid[demo]}"
fi
if wants hoop-demo-pg; then
  u="http://$host:$pg_demo_port/mcp"; wait_http "$u" "${pid[hoop-demo-pg]}"
  r="$(post "$u" "$demo_body" "${stateless_hdrs[@]}")"; echo "    ${r:0:300}" >&2
  expect_echo hoop-demo-pg "$r" "$demo_expect"
  add hoop-demo-pg "$u" "$demo_body" 2026-07-28 "" tools/call "$demo_tool" "${pid[demo]}"
fi
if wants hoop-demo-pg2; then
  for r in a b; do
    dp="pg2${r}_demo_port"; u="http://$host:${!dp}/mcp"; wait_http "$u" "${pid[hoop-demo-pg2$r]}"
    ans="$(post "$u" "$demo_body" "${stateless_hdrs[@]}")"; echo "    ${ans:0:300}" >&2
    expect_echo "hoop-demo-pg2 ($u)" "$ans" "$demo_expect"
  done
  add hoop-demo-pg2 "http://$host:$pg2a_demo_port/mcp" "$demo_body" 2026-07-28 "" tools/call "$demo_tool" "${pid[demo]}"
  url2[hoop-demo-pg2]="http://$host:$pg2b_demo_port/mcp"
fi
if wants hoop-demo-unrecorded; then
  u="http://$host:$unrec_demo_port/mcp"; wait_http "$u" "${pid[hoop-demo-unrecorded]}"
  r="$(post "$u" "$demo_body" "${stateless_hdrs[@]}")"; echo "    ${r:0:300}" >&2
  expect_echo hoop-demo-unrecorded "$r" "$demo_expect"
  add hoop-demo-unrecorded "$u" "$demo_body" 2026-07-28 "" tools/call "$demo_tool" "${pid[demo]}"
fi
if wants_nd hoop-demo; then
  u="http://$host:$nd_demo_port/mcp"; wait_http "$u" "${pid[hoop-demo-nd]}"
  r="$(post "$u" "$demo_body" "${stateless_hdrs[@]}")"
  expect_echo hoop-demo-nd "$r" "$demo_expect"
  add hoop-demo-nd "$u" "$demo_body" 2026-07-28 "" tools/call "$demo_tool" "${pid[demo]}"
fi
if wants every || wants hoop-every; then
  wait_http "http://$host:$every_port/mcp" "${pid[every]}"
fi
if wants every; then
  u="http://$host:$every_port/mcp"
  sid="$(handshake "$u")"
  r="$(post "$u" "$every_body" -H 'MCP-Protocol-Version: 2025-11-25' -H "Mcp-Session-Id: $sid")"; echo "    $r" >&2
  expect_echo every "$r" 'Echo: hi'
  add every "$u" "$every_body" 2025-11-25 "$sid" "" "" "${pid[every]}"
fi
if wants hoop-every; then
  u="http://$host:$hoop_every_port/mcp"; wait_http "$u" "${pid[hoop-every]}"
  sid="$(handshake "$u")"
  r="$(post "$u" "$every_body" -H 'MCP-Protocol-Version: 2025-11-25' -H "Mcp-Session-Id: $sid")"; echo "    $r" >&2
  expect_echo hoop-every "$r" 'Echo: hi'
  add hoop-every "$u" "$every_body" 2025-11-25 "$sid" "" "" "${pid[every]}"
fi
if wants_nd hoop-every; then
  u="http://$host:$nd_every_port/mcp"; wait_http "$u" "${pid[hoop-every-nd]}"
  sid="$(handshake "$u")"
  r="$(post "$u" "$every_body" -H 'MCP-Protocol-Version: 2025-11-25' -H "Mcp-Session-Id: $sid")"
  expect_echo hoop-every-nd "$r" 'Echo: hi'
  add hoop-every-nd "$u" "$every_body" 2025-11-25 "$sid" "" "" "${pid[every]}"
fi

# ---- CPU accounting: utime+stime of a process, in clock ticks -------------
tck="$(getconf CLK_TCK)"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# CPU of every process this script started, plus its reaped children (wrk).
our_ticks() {
  local p t=0
  for p in "${pids[@]}"; do t=$((t + $(cpu_ticks "$p"))); done
  echo $((t + $(awk '{ print $16 + $17 }' "/proc/$$/stat")))
}
# Machine-wide busy and total ticks from /proc/stat.
machine_ticks() {
  local a
  read -r -a a </proc/stat
  echo "$((a[1] + a[2] + a[3] + a[6] + a[7] + a[8])) $((a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7] + a[8]))"
}

# ticks_of PID...: their CPU ticks summed (0 for none).
ticks_of() {
  local p t=0
  for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done
  echo "$t"
}
# merge_results LINE1 LINE2: two wrk RESULT lines run side by side as one:
# requests, errors and req/s summed, each percentile the slower of the two.
merge_results() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    n = split(substr(a, 8), x, " "); split(substr(b, 8), y, " ")
    out = "RESULT"
    for (i = 1; i <= n; i++) {
      split(x[i], kx, "="); split(y[i], ky, "=")
      if (kx[1] == "rps" || kx[1] == "requests" || kx[1] == "non2xx" || kx[1] == "sock_errors") v = kx[2] + ky[2]
      else v = (kx[2] + 0 > ky[2] + 0) ? kx[2] : ky[2]
      out = out " " kx[1] "=" v
    }
    print out
  }'
}

# ---- is the machine quiet? -------------------------------------------------
# Share of CPU time not idle over one second, all CPUs (our servers are idle now).
cpu_busy() {
  local a b
  read -r -a a </proc/stat; sleep 1; read -r -a b </proc/stat
  awk -v u="$(( (b[1]+b[2]+b[3]+b[6]+b[7]+b[8]) - (a[1]+a[2]+a[3]+a[6]+a[7]+a[8]) ))" \
      -v i="$(( (b[4]+b[5]) - (a[4]+a[5]) ))" 'BEGIN { printf "%.0f", ((u + i) > 0 ? 100 * u / (u + i) : 0) }'
}
busy_before="$(cpu_busy)"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
log "CPU busy before measuring: ${busy_before}% (load average $load_before)"
[ "$busy_before" -le 15 ] || log "WARNING: the machine is busy (${busy_before}% CPU) before the benchmark starts; expect noisy numbers"

# ---- measure --------------------------------------------------------------
out="${BENCH_OUT:-$scratch/results.tsv}"
printf 'round\tconfig\tconns\tp50_us\tp90_us\tp99_us\tmax_us\trps\trequests\tnon2xx\tsock_errors\tcpu_us_per_req_server\tcpu_us_per_req_hoop\tcpu_us_per_req_broker\tother_cpu_pct\n' >"$out"
declare -A p50
for round in $(seq 1 "$rounds"); do
for name in "${configs[@]}"; do
  for c in $conns; do
    export BENCH_BODY="${body[$name]}" BENCH_PROTO="${proto[$name]}" BENCH_SESSION="${session[$name]}"
    export BENCH_MCP_METHOD="${mmethod[$name]}" BENCH_MCP_NAME="${mname[$name]}"
    check_url "${url[$name]}"
    # A config with a second URL splits its connections between the two.
    second="${url2[$name]:-}"; each="$c"
    if [ -n "$second" ]; then
      check_url "$second"
      each=$(( c > 1 ? c / 2 : 1 ))
    fi
    wrk_cmd=(wrk -t"$(( wrk_threads < each ? wrk_threads : each ))" -c"$each" --timeout 5s -s "$here/tools_call.lua" "${url[$name]}")
    wrk2_cmd=("${wrk_cmd[@]:0:$(( ${#wrk_cmd[@]} - 1 ))}" "$second")
    log "round $round/$rounds: $name, $c connection(s): warm-up ${warmup}s"
    if [ "$warmup" -gt 0 ]; then
      wrk2_pid=""
      if [ -n "$second" ]; then "${wrk2_cmd[@]:0:3}" -d"${warmup}s" "${wrk2_cmd[@]:3}" >/dev/null & wrk2_pid=$!; fi
      "${wrk_cmd[@]:0:3}" -d"${warmup}s" "${wrk_cmd[@]:3}" >/dev/null
      # Only the second wrk: the servers are this shell's jobs too.
      [ -z "$wrk2_pid" ] || wait "$wrk2_pid"
    fi
    hoop_pid=""; broker_pid=""
    case "$name" in
      hoop-demo) hoop_pid="${pid[hoop-demo]}"; broker_pid="${pid[broker]}" ;;
      hoop-every) hoop_pid="${pid[hoop-every]}"; broker_pid="${pid[broker]}" ;;
      hoop-demo-nd) hoop_pid="${pid[hoop-demo-nd]}"; broker_pid="${pid[broker]}" ;;
      hoop-demo-nomask) hoop_pid="${pid[hoop-demo-nomask]}"; broker_pid="${pid[broker-nomask]}" ;;
      hoop-demo-unrecorded) hoop_pid="${pid[hoop-demo-unrecorded]}"; broker_pid="${pid[broker-unrecorded]}" ;;
      hoop-demo-pg) hoop_pid="${pid[hoop-demo-pg]}"; broker_pid="${pid[broker-pg]}" ;;
      hoop-demo-pg2) hoop_pid="${pid[hoop-demo-pg2a]} ${pid[hoop-demo-pg2b]}"; broker_pid="${pid[broker-pg2a]} ${pid[broker-pg2b]}" ;;
      hoop-every-nd) hoop_pid="${pid[hoop-every-nd]}"; broker_pid="${pid[broker]}" ;;
      # The two proxies stand where hoop connect and the broker stand.
      proxy2-demo) hoop_pid="${pid[proxy-a]}"; broker_pid="${pid[proxy-b]}" ;;
    esac
    s0="$(cpu_ticks "${pidof[$name]}")"; h0="$(ticks_of $hoop_pid)"; b0="$(ticks_of $broker_pid)"
    o0="$(our_ticks)"; read -r m0 t0 <<<"$(machine_ticks)"
    wrk2_pid=""
    if [ -n "$second" ]; then run "${wrk2_cmd[@]:0:3}" -d"${duration}s" "${wrk2_cmd[@]:3}" >"$scratch/wrk.$name.c$c.r$round.second.txt" & wrk2_pid=$!; fi
    line="$(run "${wrk_cmd[@]:0:3}" -d"${duration}s" "${wrk_cmd[@]:3}" | tee "$scratch/wrk.$name.c$c.r$round.txt" | grep '^RESULT ' || true)"
    [ -z "$wrk2_pid" ] || wait "$wrk2_pid"
    [ -n "$line" ] || die "wrk printed no RESULT line: $(cat "$scratch/wrk.$name.c$c.r$round.txt")"
    if [ -n "$second" ]; then
      line2="$(grep '^RESULT ' "$scratch/wrk.$name.c$c.r$round.second.txt" || true)"
      [ -n "$line2" ] || die "the second wrk printed no RESULT line: $(cat "$scratch/wrk.$name.c$c.r$round.second.txt")"
      line="$(merge_results "$line" "$line2")"
    fi
    s1="$(cpu_ticks "${pidof[$name]}")"; h1="$(ticks_of $hoop_pid)"; b1="$(ticks_of $broker_pid)"
    o1="$(our_ticks)"; read -r m1 t1 <<<"$(machine_ticks)"
    # CPU the machine spent on anything but this benchmark during the run
    # (other processes, and irq/softirq time charged to no process).
    other="$(awk -v m=$((m1 - m0)) -v o=$((o1 - o0)) -v t=$((t1 - t0)) 'BEGIN { x = t > 0 ? 100 * (m - o) / t : 0; printf "%.0f", (x < 0 ? 0 : x) }')"
    declare -A r=()
    for kv in ${line#RESULT }; do r[${kv%%=*}]="${kv#*=}"; done
    per_req() { awk -v d="$1" -v n="${r[requests]}" -v t="$tck" 'BEGIN { if (n > 0) printf "%.1f", d * 1e6 / t / n; else print "-" }'; }
    cs="$(per_req $((s1 - s0)))"; ch="-"; cb="-"
    [ -n "$hoop_pid" ] && ch="$(per_req $((h1 - h0)))" && cb="$(per_req $((b1 - b0)))"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$c" "${r[p50_us]}" "${r[p90_us]}" \
      "${r[p99_us]}" "${r[max_us]}" "${r[rps]}" "${r[requests]}" "${r[non2xx]}" "${r[sock_errors]}" "$cs" "$ch" "$cb" "$other" >>"$out"
    [ "$other" -le 10 ] || log "WARNING: $name at $c connection(s): ${other}% of the machine's CPU went to other work during the run; numbers are suspect"
    p50["$name/$c/$round"]="${r[p50_us]}"
    if [ "${r[non2xx]}" != 0 ] || [ "${r[sock_errors]}" != 0 ]; then
      log "WARNING: $name at $c connection(s): ${r[non2xx]} non-2xx answers, ${r[sock_errors]} socket errors"
    fi
    unset r
  done
done
done

# ---- report ---------------------------------------------------------------
echo
echo "hoop tools/call benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r)"
echo "hoop: $provenance"
echo "wrk closed loop, keep-alive, ${duration}s per run after ${warmup}s warm-up, $rounds round(s) of every config in turn; latency in microseconds"
echo "demo configs call: $demo_tool${payload:+ ($payload bytes of text in the answer)}"
echo "machine CPU busy before the runs: ${busy_before}% (load average then: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg))"
echo "cpu/req = CPU time (user+sys) the process used during the run / requests (the server, hoop connect, hoop-broker; for proxy2-demo the first and the second proxy)"
echo "other cpu% = share of the machine's CPU that went to anything but this benchmark during the run (keep runs where it is low)"
echo
{
  printf 'round\tconfig\tconns\tp50\tp90\tp99\tmax\treq/s\trequests\tnon-2xx\tsock-err\tcpu/req srv\tcpu/req hoop\tcpu/req broker\tother cpu%%\n'
  tail -n +2 "$out"
} | column -t -s $'\t'
echo
# added THROUGH DIRECT CONNS [WHAT]: p50(THROUGH) - p50(DIRECT), taken
# within each round; over several rounds, their median and range.
added() {
  local via direct what="${4:-target for hoop <= 150 us}" diffs=() i
  for i in $(seq 1 "$rounds"); do
    via="${p50[$1/$3/$i]:-}"; direct="${p50[$2/$3/$i]:-}"
    [ -n "$via" ] && [ -n "$direct" ] || return 0
    diffs+=("$((via - direct))")
  done
  if [ "$rounds" = 1 ]; then
    echo "added p50 ($1 - $2), $3 connection(s): ${diffs[0]} us ($what)"
  else
    printf '%s\n' "${diffs[@]}" | sort -n | awk -v t="$1 - $2" -v c="$3" -v w="$what" '
      { d[NR] = $1 }
      END {
        m = NR % 2 ? d[(NR + 1) / 2] : (d[NR / 2] + d[NR / 2 + 1]) / 2
        line = ""; for (i = 1; i <= NR; i++) line = line (i > 1 ? " " : "") d[i]
        printf "added p50 (%s), %s connection(s): median %s us over %d rounds, from %s to %s (sorted: %s) (%s)\n", t, c, m, NR, d[1], d[NR], line, w
      }'
  fi
}
for c in $conns; do
  added hoop-demo demo "$c"
  added proxy2-demo demo "$c"
  added hoop-demo hoop-demo-nomask "$c" "the masking layer"
  added hoop-demo-nomask hoop-demo-unrecorded "$c" "the audit layer, at BENCH_AUDIT=${BENCH_AUDIT:-fsync}"
  added hoop-every every "$c"
  added hoop-demo-pg demo "$c" "one broker, store and audit log in PostgreSQL"
  added hoop-demo-pg hoop-demo "$c" "PostgreSQL instead of SQLite"
  added hoop-demo-pg2 demo "$c" "two brokers on one PostgreSQL, connections split between them"
  added hoop-demo-pg2 hoop-demo-pg "$c" "two brokers on PostgreSQL instead of one"
  if [ "$diag_nodelay" = 1 ]; then
    added hoop-demo-nd demo "$c"
    added hoop-every-nd every "$c"
  fi
done
echo
echo "raw results: $out"
