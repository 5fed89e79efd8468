-- wrk script for tests/bench/run.sh: every request is the same JSON-RPC
-- POST, configured through the environment:
--   BENCH_BODY        the JSON-RPC message (required)
--   BENCH_PROTO       MCP-Protocol-Version header (optional)
--   BENCH_SESSION     Mcp-Session-Id header (optional, handshake era)
--   BENCH_MCP_METHOD  Mcp-Method header (optional, 2026-07-28)
--   BENCH_MCP_NAME    Mcp-Name header (optional, 2026-07-28)
-- done() prints one machine-readable line that run.sh parses:
--   RESULT p50_us=.. p90_us=.. p99_us=.. max_us=.. mean_us=.. rps=.. requests=.. non2xx=.. sock_errors=..

local function opt(name, header)
  local v = os.getenv(name)
  if v ~= nil and v ~= "" then
    wrk.headers[header] = v
  end
end

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or error("BENCH_BODY is not set")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
opt("BENCH_PROTO", "MCP-Protocol-Version")
opt("BENCH_SESSION", "Mcp-Session-Id")
opt("BENCH_MCP_METHOD", "Mcp-Method")
opt("BENCH_MCP_NAME", "Mcp-Name")

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "RESULT p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f rps=%.1f requests=%d non2xx=%d sock_errors=%d\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    summary.requests / secs, summary.requests, e.status, e.connect + e.read + e.write + e.timeout))
end
