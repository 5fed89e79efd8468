#!/usr/bin/env node
/**
 * Smoke client on the official TypeScript MCP SDK (@modelcontextprotocol/sdk 1.32.x,
 * Client + StreamableHTTPClientTransport), for hoop's end-to-end tests.
 *
 * Steps, each printed as one JSON line on stdout: {"scenario": ..., "ok": ..., "detail": ...}
 *   initialize  - connect (initialize handshake; the TS SDK speaks 2025-11-25 and older)
 *   list_tools  - tools/list, tool names
 *   echo        - call the echo tool (or --echo-tool NAME) with a unique text; the result
 *                 must be that text (or "Echo: <text>", server-everything's form)
 *   held        - with --held-tool NAME --held-args JSON: a call a broker holds for approval,
 *                 made at the SDK's default request timeout (60 s, no progress token); while
 *                 the answer is "pending, call again" (_meta["dev.hoop/approval"].state) the
 *                 same call is made again, at most --held-tries times; then the tool's result
 * Exit 0 when all passed, 1 when any failed (later steps are reported failed too), 2 on usage.
 *
 * Usage (from tests/):
 *   node clients/ts_client.mjs --url http://127.0.0.1:3001/mcp [--header K=V]... [--timeout S]
 */
import { randomUUID } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

function usage(msg) {
  console.error(`ts_client: ${msg}`);
  console.error("usage: node clients/ts_client.mjs --url URL [--header K=V]... [--timeout SECONDS] [--echo-tool NAME]");
  process.exit(2);
}

function parseArgs(argv) {
  const out = { url: undefined, headers: {}, timeout: 30, echoTool: undefined, heldTool: undefined, heldArgs: {}, heldTries: 5 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--url") out.url = next();
    else if (a === "--header") {
      const kv = next();
      const eq = kv.indexOf("=");
      if (eq <= 0) usage(`--header must be K=V, got ${JSON.stringify(kv)}`);
      out.headers[kv.slice(0, eq)] = kv.slice(eq + 1);
    } else if (a === "--timeout") {
      out.timeout = Number(next());
      if (!(out.timeout > 0)) usage("--timeout must be a positive number");
    } else if (a === "--echo-tool") out.echoTool = next();
    else if (a === "--held-tool") out.heldTool = next();
    else if (a === "--held-args") out.heldArgs = JSON.parse(next());
    else if (a === "--held-tries") out.heldTries = Number(next());
    else usage(`unknown argument ${JSON.stringify(a)}`);
  }
  if (!out.url) usage("--url is required");
  return out;
}

function emit(scenario, ok, detail) {
  process.stdout.write(JSON.stringify({ scenario, ok, detail }) + "\n");
}

function withTimeout(promise, seconds, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${seconds}s`)), seconds * 1000);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function firstStringArg(tool) {
  const schema = tool.inputSchema ?? {};
  const props = schema.properties ?? {};
  for (const name of schema.required ?? []) if (props[name]?.type === "string") return name;
  for (const [name, p] of Object.entries(props)) if (p?.type === "string") return name;
  return undefined;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const ms = args.timeout * 1000;
  const steps = ["initialize", "list_tools", "echo"];
  if (args.heldTool) steps.push("held");
  let failed = false;
  const fail = (step, detail) => {
    failed = true;
    emit(step, false, detail);
    for (const s of steps.slice(steps.indexOf(step) + 1)) emit(s, false, `skipped: ${step} failed`);
  };

  const transport = new StreamableHTTPClientTransport(new URL(args.url), {
    requestInit: { headers: args.headers },
  });
  const client = new Client({ name: "hoop-e2e-ts-client", version: "1.0.0" }, { capabilities: {} });

  try {
    await withTimeout(client.connect(transport, { timeout: ms }), args.timeout, "initialize");
    emit("initialize", true, {
      protocol_version: transport.protocolVersion ?? null,
      session_id: transport.sessionId ?? null,
      server_info: client.getServerVersion() ?? null,
    });
  } catch (e) {
    fail("initialize", String(e?.message ?? e));
    return 1;
  }

  try {
    let tools = [];
    try {
      let cursor;
      for (let page = 0; page < 50; page++) {
        const res = await withTimeout(client.listTools(cursor ? { cursor } : {}, { timeout: ms }), args.timeout, "tools/list");
        tools = tools.concat(res.tools);
        cursor = res.nextCursor;
        if (!cursor) break;
      }
      if (tools.length === 0) throw new Error("tools/list returned no tools");
      emit("list_tools", true, { tools: tools.map((t) => t.name) });
    } catch (e) {
      fail("list_tools", String(e?.message ?? e));
      return 1;
    }

    try {
      const name = args.echoTool ?? "echo";
      const tool = tools.find((t) => t.name === name);
      if (!tool) throw new Error(`no tool named ${JSON.stringify(name)}; pass --echo-tool NAME`);
      const key = firstStringArg(tool) ?? "text";
      const text = `hoop-ts-echo-${randomUUID()}`;
      const res = await withTimeout(
        client.callTool({ name, arguments: { [key]: text } }, undefined, { timeout: ms }),
        args.timeout,
        "tools/call",
      );
      const got = (res.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("");
      if (res.isError) throw new Error(`tool returned isError: ${got.slice(0, 300)}`);
      if (got !== text && got !== `Echo: ${text}`) {
        throw new Error(`echo mismatch: sent ${JSON.stringify(text)}, got ${JSON.stringify(got.slice(0, 300))}`);
      }
      emit("echo", true, { tool: name, sent: text, exact: got === text });
    } catch (e) {
      fail("echo", String(e?.message ?? e));
    }

    if (args.heldTool) {
      try {
        const pending = [];
        let res;
        for (let attempt = 0; attempt < args.heldTries; attempt++) {
          // No options: the SDK's own default timeout, as an ordinary client.
          const started = Date.now();
          res = await client.callTool({ name: args.heldTool, arguments: args.heldArgs });
          const approval = res?._meta?.["dev.hoop/approval"];
          if (approval?.state !== "pending") break;
          pending.push({ id: approval.id, waited_ms: Date.now() - started });
        }
        const got = (res?.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("");
        if (res?._meta?.["dev.hoop/approval"]?.state === "pending") throw new Error(`still pending after ${args.heldTries} calls`);
        if (res?.isError) throw new Error(`tool returned isError: ${got.slice(0, 300)}`);
        emit("held", true, { pending, text: got.slice(0, 300) });
      } catch (e) {
        fail("held", String(e?.message ?? e));
      }
    }
  } finally {
    try {
      await withTimeout(transport.terminateSession().catch(() => {}), 5, "terminate");
    } catch {
      /* best effort */
    }
    await withTimeout(client.close(), 5, "close").catch(() => {});
  }
  return failed ? 1 : 0;
}

// Hard stop so a wedged connection can never hang the test run.
const hardStop = setTimeout(() => {
  console.error("ts_client: overall deadline exceeded");
  process.exit(1);
}, 5 * 60 * 1000);
hardStop.unref();

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`ts_client: ${e?.stack ?? e}`);
    process.exit(1);
  },
);
