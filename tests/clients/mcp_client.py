"""Scenario driver on the official Python MCP SDK client (mcp==2.3.0), for hoop's e2e tests.

Connects over streamable HTTP to --url (a real server, or hoop in front of one),
runs the requested scenarios on one client connection, and prints one JSON line
per scenario on stdout:  {"scenario": NAME, "ok": true|false, "detail": ...}
Exit status: 0 when every scenario passed, 1 when any failed, 2 on bad usage.

  --mode auto       SDK default: probe server/discover (2026-07-28), fall back to initialize
  --mode handshake  force the initialize handshake (2025-11-25); SDK Client(mode="legacy")
  --mode modern     adopt 2026-07-28 directly, no discover probe; SDK Client(mode="2026-07-28")

Scenarios: list_tools echo resources prompts progress held held_task sampling elicitation
input_required task cancel big negotiated logging request_logs resource_updates
list_changed listen (see SCENARIOS below).
Tool names are detected from tools/list (server-everything, tests/fixtures/
stateless_server.py) or given with --tool ROLE=NAME; roles: echo progress
sampling elicitation input_required task cancel big logging subscriber_updates
request_logs list_changed listen.

Notes:
  task   stateless_server.py long_report: io.modelcontextprotocol/tasks extension
         (resultType "task" + tasks/get polling; 2026-07-28 only, via a ResultClaim).
         server-everything simulate-research-query: SEP-1686 tasks (2025-11-25); mcp
         2.3.0 has no API for a task-augmented tools/call, so that one request goes
         through the session's private dispatcher.
  held   a call a broker holds for approval (--tool held=NAME --held-args JSON): >= 2
         progress notifications while it waits, then the tool's own result.
  held_task  the same call with the Tasks extension declared: answered with the broker's
         own task, polled with tasks/get until it completes (--held-expect failed: denied).
  cancel cancels the call client-side after its first progress notification (the SDK
         sends notifications/cancelled on 2025-11-25, closes the POST on 2026-07-28),
         then checks echo still works on the same client.
  big    big_payload {bytes} (alphabet a-z0-9 cycled, as hoop's demo server), or an
         echo-like tool via --tool big=echo (payload sent and returned).
  logging           server-everything toggle-simulated-logging after logging/setLevel debug:
                    >= 2 notifications/message on the session's GET stream (5 s pace).
  request_logs      stateless_server.py chatty: its log notifications ride the call's own
                    stream, in order, before the result (2026-07-28: opted in per request
                    with _meta io.modelcontextprotocol/logLevel).
  resource_updates  server-everything: resources/subscribe to the first listed resource,
                    toggle-subscriber-updates, notifications/resources/updated for that URI
                    on the GET stream (handshake era).
  list_changed      handshake era, GET stream: server-everything gzip-file-as-resource (a
                    data: URI) adds a resource -> notifications/resources/list_changed and the
                    resource in resources/list; stateless_server.py announce_changes ->
                    notifications/tools/list_changed (+ resources/updated) and the new tool
                    in tools/list.
  listen            2026-07-28 subscriptions/listen (Client.listen) for tools list changes and
                    fixture://greeting updates; announce_changes must produce both events on
                    the listen stream, stamped with its subscriptionId; then the new tool is
                    in tools/list and echo still works.

Example:
  tests/.venv/bin/python tests/clients/mcp_client.py --url http://127.0.0.1:3001/mcp \
      --mode auto --scenario negotiated --scenario echo --header Authorization='Bearer t'
"""

from __future__ import annotations

import argparse
import base64
import json
import string
import sys
import time
import traceback
import uuid
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import anyio
import httpx2
import mcp_types as types
from mcp import Client, MCPDeprecationWarning
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientRequestContext, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ConfigDict, Field

SAMPLING_REPLY = "hoop-sampled-reply-7f3a"
ELICIT_TEXT = "hoop-elicited-text"
TASKS_EXTENSION_ID = "io.modelcontextprotocol/tasks"
BIG_PATTERN = string.ascii_lowercase + string.digits  # = stateless_server.py and hoop's demo server

ROLE_CANDIDATES: dict[str, list[str]] = {
    "echo": ["echo"],
    "progress": ["slow_count", "trigger-long-running-operation", "longRunningOperation"],
    "cancel": ["slow_count", "trigger-long-running-operation", "longRunningOperation"],
    "sampling": ["trigger-sampling-request", "sampleLLM", "ask_llm"],
    "elicitation": ["trigger-elicitation-request", "startElicitation", "confirm_transfer"],
    "input_required": ["confirm_transfer"],
    "task": ["long_report", "simulate-research-query"],
    "big": ["big_payload"],
    "held": ["deploy_model"],
    "logging": ["toggle-simulated-logging"],
    "subscriber_updates": ["toggle-subscriber-updates"],
    "request_logs": ["chatty"],
    "list_changed": ["announce_changes", "gzip-file-as-resource"],
    "listen": ["announce_changes"],
}
# Protected data in the formats people write it, for the masking scenario.
MASKING_ECHO = (
    "card 4111 1111 1111 1111, SSN 078-05-1120, IBAN GB82 WEST 1234 5698 7654 32, "
    "routing 021000021, account 000123456789"
)
MASKING_PROBE = "card 4111 1111 1111 1111 SSN 078-05-1120"
LOG_LEVEL_META_KEY = "io.modelcontextprotocol/logLevel"
SUBSCRIPTION_ID_META_KEY = "io.modelcontextprotocol/subscriptionId"


class ScenarioFailed(Exception):
    """A scenario's assertion failed; the message becomes the detail."""

    def __init__(self, detail: Any) -> None:
        super().__init__(str(detail))
        self.detail = detail


def check(cond: bool, detail: Any) -> None:
    if not cond:
        raise ScenarioFailed(detail)


def big_text(n: int) -> str:
    return (BIG_PATTERN * (n // len(BIG_PATTERN) + 1))[:n]


def result_text(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


# ---------------------------------------------------------------------------
# Callbacks: sampling (fixed reply), elicitation (fills any form schema)
# ---------------------------------------------------------------------------


class Callbacks:
    def __init__(self) -> None:
        self.sampling_calls = 0
        self.elicitation_calls = 0
        self.elicitation_messages: list[str] = []
        self.sampling_texts: list[str] = []

    async def sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.sampling_calls += 1
        for m in params.messages:
            content = m.content if isinstance(m.content, list) else [m.content]
            self.sampling_texts.extend(getattr(c, "text", "") for c in content)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=SAMPLING_REPLY),
            model="hoop-fixture-model",
            stop_reason="endTurn",
        )

    async def elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        self.elicitation_calls += 1
        self.elicitation_messages.append(getattr(params, "message", ""))
        schema = getattr(params, "requested_schema", None)
        if schema is None:  # url-mode elicitation: nothing to fill
            return types.ElicitResult(action="accept")
        props = schema.get("properties", {}) if isinstance(schema, dict) else {}
        return types.ElicitResult(action="accept", content={k: fill_value(v) for k, v in props.items()})


def fill_value(prop: dict[str, Any]) -> Any:
    """A plausible value for one elicitation form property."""
    kind = prop.get("type")
    if "enum" in prop and prop["enum"]:
        return prop.get("default", prop["enum"][0])
    if "oneOf" in prop and prop["oneOf"]:
        return prop.get("default", prop["oneOf"][0].get("const"))
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        if "default" in prop:
            return prop["default"]
        return prop.get("minimum", 1)
    if kind == "array":
        if "default" in prop:
            return prop["default"]
        items = prop.get("items", {})
        choices = items.get("enum") or [o.get("const") for o in items.get("anyOf", []) if "const" in o]
        return choices[:1] if choices else []
    fmt = prop.get("format")
    return {
        "email": "hoop@example.com",
        "uri": "https://example.com/hoop",
        "date": "2000-01-01",
        "date-time": "2000-01-01T00:00:00Z",
    }.get(fmt, ELICIT_TEXT)


# ---------------------------------------------------------------------------
# Server notifications, as the session surfaced them (message_handler)
# ---------------------------------------------------------------------------


class Notes:
    """Every server notification the client session surfaced, in arrival order."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.errors: list[str] = []

    async def handle(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.errors.append(describe(message))
            return
        params = getattr(message, "params", None)
        dumped = params.model_dump(mode="json", by_alias=True, exclude_none=True) if params is not None else {}
        self.items.append({"method": message.method, "params": dumped, "t": time.monotonic()})

    def matching(self, pred: Callable[[dict[str, Any]], bool], since: int = 0) -> list[dict[str, Any]]:
        return [n for n in self.items[since:] if pred(n)]

    async def wait(
        self, pred: Callable[[dict[str, Any]], bool], count: int, timeout: float, since: int = 0
    ) -> list[dict[str, Any]]:
        """The notifications after index `since` matching `pred`, once there are `count` (or at `timeout`)."""
        with anyio.move_on_after(timeout):
            while len(self.matching(pred, since)) < count:
                await anyio.sleep(0.05)
        return self.matching(pred, since)


def method_is(method: str, **params: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda n: n["method"] == method and all(n["params"].get(k) == v for k, v in params.items())


# ---------------------------------------------------------------------------
# Tasks extension client (io.modelcontextprotocol/tasks, SEP-2663; 2026-07-28).
# mcp 2.3.0 ships the claim seam (ResultClaim) but no tasks client, so this is one.
# ---------------------------------------------------------------------------


class _TaskWire(types.Result):
    model_config = ConfigDict(populate_by_name=True, extra="allow")
    task_id: str = Field(alias="taskId")
    status: str
    status_message: str | None = Field(default=None, alias="statusMessage")
    poll_interval_ms: int | None = Field(default=None, alias="pollIntervalMs")


class CreateTaskWire(_TaskWire):
    result_type: Literal["task"] = Field(alias="resultType")


class GetTaskWire(_TaskWire):
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class TaskIdParams(types.RequestParams):
    model_config = ConfigDict(populate_by_name=True)
    task_id: str = Field(serialization_alias="taskId")


class TasksGetRequest(types.Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"


class TasksClient(ClientExtension):
    identifier = TASKS_EXTENSION_ID

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.task_ids: list[str] = []
        self.statuses: list[str] = []
        self.status_messages: list[str] = []

    def claims(self) -> list[ResultClaim[Any]]:
        return [
            ResultClaim(
                result_type="task",
                model=CreateTaskWire,
                resolve=self._resolve,
                protocol_versions=frozenset(MODERN_PROTOCOL_VERSIONS),
            )
        ]

    async def _resolve(self, created: CreateTaskWire, ctx: ClaimContext) -> types.CallToolResult:
        self.task_ids.append(created.task_id)
        self.statuses.append(created.status)
        with anyio.fail_after(self.timeout):
            while True:
                current = await ctx.session.send_request(
                    TasksGetRequest(params=TaskIdParams(task_id=created.task_id)), GetTaskWire
                )
                self.statuses.append(current.status)
                if current.status_message:
                    self.status_messages.append(current.status_message)
                if current.status == "completed":
                    return types.CallToolResult.model_validate(current.result or {})
                if current.status in ("failed", "cancelled"):
                    msg = (current.error or {}).get("message") or current.status_message or current.status
                    return types.CallToolResult(
                        content=[types.TextContent(type="text", text=f"task {current.status}: {msg}")], is_error=True
                    )
                delay = (current.poll_interval_ms or 100) / 1000
                await anyio.sleep(min(max(delay, 0.02), 1.0))


# ---------------------------------------------------------------------------
# Scenario runner
# ---------------------------------------------------------------------------


class Runner:
    def __init__(
        self, client: Client, args: argparse.Namespace, cb: Callbacks, tasks: TasksClient | None, notes: Notes
    ) -> None:
        self.client = client
        self.args = args
        self.cb = cb
        self.tasks = tasks
        self.notes = notes
        self._tools: list[types.Tool] | None = None

    async def tools(self) -> list[types.Tool]:
        if self._tools is None:
            tools: list[types.Tool] = []
            cursor: str | None = None
            for _ in range(50):
                page = await self.client.list_tools(cursor=cursor)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
            self._tools = tools
        return self._tools

    async def tool_for(self, role: str) -> types.Tool:
        names = {t.name: t for t in await self.tools()}
        wanted = self.args.tool_map.get(role)
        if wanted is not None:
            check(wanted in names, f"--tool {role}={wanted}: no such tool (have {sorted(names)})")
            return names[wanted]
        for candidate in ROLE_CANDIDATES.get(role, []):
            if candidate in names:
                return names[candidate]
        raise ScenarioFailed(f"no tool for role {role!r} (have {sorted(names)}); pass --tool {role}=NAME")

    async def call(self, name: str, arguments: dict[str, Any], **kw: Any) -> types.CallToolResult:
        return await self.client.call_tool(name, arguments, read_timeout_seconds=self.args.timeout, **kw)

    # -- scenarios -----------------------------------------------------------

    async def s_negotiated(self) -> Any:
        version = self.client.protocol_version
        info = self.client.server_info
        era = "modern" if version in MODERN_PROTOCOL_VERSIONS else "handshake"
        detail = {
            "protocol_version": version,
            "era": era,
            "mode": self.args.mode,
            "server_info": info.model_dump(mode="json", exclude_none=True) if info else None,
        }
        if self.args.mode == "handshake":
            check(version in HANDSHAKE_PROTOCOL_VERSIONS, {**detail, "error": "handshake mode got a modern version"})
        if self.args.mode == "modern":
            check(version in MODERN_PROTOCOL_VERSIONS, {**detail, "error": "modern mode got a handshake version"})
        if self.args.expect_version:
            check(version == self.args.expect_version, {**detail, "error": f"expected {self.args.expect_version}"})
        return detail

    async def s_list_tools(self) -> Any:
        tools = await self.tools()
        check(len(tools) > 0, "tools/list returned no tools")
        return {"tools": [t.name for t in tools]}

    async def s_echo(self) -> Any:
        tool = await self.tool_for("echo")
        key = first_string_arg(tool) or "text"
        text = f"hoop-echo-{uuid.uuid4().hex}"
        result = await self.call(tool.name, {key: text})
        got = result_text(result)
        check(not result.is_error, {"error": "tool returned isError", "text": got[:500]})
        exact = got == text
        check(exact or got == f"Echo: {text}", {"error": "echo mismatch", "sent": text, "got": got[:500]})
        return {"tool": tool.name, "sent": text, "exact": exact}

    async def s_masking(self) -> Any:
        """get_customer and an echo of protected data, through a masking broker: returns what came back."""
        customer = await self.call("get_customer", {"customer_id": "cust-001"})
        check(not customer.is_error, {"error": "get_customer returned isError", "text": result_text(customer)[:500]})
        echo = await self.tool_for("echo")
        key = first_string_arg(echo) or "text"
        echoed = await self.call(echo.name, {key: MASKING_ECHO})
        check(not echoed.is_error, {"error": "echo returned isError", "text": result_text(echoed)[:500]})
        return {
            "customer_text": result_text(customer),
            "customer_structured": customer.structured_content,
            "echo_text": result_text(echoed),
        }

    async def s_carriers(self) -> Any:
        """MASKING_PROBE through every carrier the stateless fixture has: returns what arrived in each."""
        modern = self.client.protocol_version in MODERN_PROTOCOL_VERSIONS
        out: dict[str, Any] = {"protocol_version": self.client.protocol_version}
        out["tool_result"] = result_text(await self.call("echo", {"text": MASKING_PROBE}))
        since = len(self.notes.items)
        await self.call("chatty", {"text": MASKING_PROBE, "count": 2}, meta={LOG_LEVEL_META_KEY: "debug"})
        logs = self.notes.matching(lambda n: n["method"] == "notifications/message", since)
        out["log_data"] = [n["params"].get("data") for n in logs]
        self.cb.sampling_texts.clear()
        out["ask_llm_result"] = result_text(await self.call("ask_llm", {"prompt": MASKING_PROBE}))
        out["sampling_request"] = list(self.cb.sampling_texts)
        got = await self.client.get_prompt("summarize", {"topic": MASKING_PROBE})
        out["prompt_text"] = getattr(got.messages[0].content, "text", "")
        if modern and self.tasks is not None:
            self.tasks.status_messages.clear()
            result = await self.call("long_report", {"topic": MASKING_PROBE, "sections": 2, "delay_ms": 400})
            out["task_result"] = result_text(result)
            out["task_status_messages"] = list(self.tasks.status_messages)
        blocks = (await self.call("disclose", {"text": MASKING_PROBE, "via": "content"})).content
        out["content_blocks"] = [
            getattr(b, "text", None)
            or getattr(getattr(b, "resource", None), "text", None)
            or getattr(b, "description", None)
            for b in blocks
        ]
        try:
            await self.call("disclose", {"text": MASKING_PROBE, "via": "error"})
            out["error"] = None
        except MCPError as exc:
            out["error"] = {"code": exc.code, "message": exc.message, "data": exc.error.data}
        progress: list[str | None] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(message)

        await self.call("disclose", {"text": MASKING_PROBE, "via": "progress"}, progress_callback=on_progress)
        out["progress_messages"] = progress
        self.cb.elicitation_messages.clear()
        out["confirm_note_result"] = result_text(await self.call("confirm_note", {"text": MASKING_PROBE}))
        out["elicitation_message"] = list(self.cb.elicitation_messages)
        read = await self.client.read_resource("fixture://statement")
        blob = getattr(read.contents[0], "blob", None)
        out["statement_blob"] = base64.b64decode(blob).decode() if blob is not None else None
        done = await self.client.complete(
            types.PromptReference(type="ref/prompt", name="summarize"), {"name": "topic", "value": MASKING_PROBE}
        )
        out["completion_values"] = done.completion.values
        try:
            got = await self.call("disclose", {"text": MASKING_PROBE, "via": "bad_blob"})
            out["unmaskable"] = {"delivered": got.model_dump(mode="json", by_alias=True)}
        except MCPError as exc:
            out["unmaskable"] = {"code": exc.code, "message": exc.message}
        return out

    async def s_resources(self) -> Any:
        listed = await self.client.list_resources()
        check(len(listed.resources) > 0, "resources/list returned no resources")
        first = listed.resources[0]
        read = await self.client.read_resource(str(first.uri))
        check(len(read.contents) > 0, {"error": "resources/read returned no contents", "uri": str(first.uri)})
        c = read.contents[0]
        text = getattr(c, "text", None)
        blob = getattr(c, "blob", None)
        return {
            "count": len(listed.resources),
            "uri": str(first.uri),
            "kind": "text" if text is not None else "blob",
            "length": len(text if text is not None else blob or ""),
            "text_prefix": (text or "")[:80],
        }

    async def s_prompts(self) -> Any:
        listed = await self.client.list_prompts()
        check(len(listed.prompts) > 0, "prompts/list returned no prompts")
        first = listed.prompts[0]
        plausible = {"city": "Paris", "state": "TX", "topic": "hoop", "resourceType": "Text", "resourceId": "1",
                     "department": "Engineering", "name": "Alice"}
        args = {a.name: plausible.get(a.name, "hoop") for a in (first.arguments or []) if a.required}
        got = await self.client.get_prompt(first.name, args or None)
        check(len(got.messages) > 0, {"error": "prompts/get returned no messages", "prompt": first.name})
        m = got.messages[0]
        return {
            "prompt": first.name,
            "arguments": args,
            "messages": len(got.messages),
            "first_text": getattr(m.content, "text", "")[:120],
        }

    async def s_progress(self) -> Any:
        tool = await self.tool_for("progress")
        seen: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total, message))

        args = progress_args(tool.name, long=False)
        result = await self.call(tool.name, args, progress_callback=on_progress)
        check(not result.is_error, {"error": "tool returned isError", "text": result_text(result)[:300]})
        detail = {"tool": tool.name, "args": args, "notifications": len(seen), "progress": [p for p, _, _ in seen]}
        check(len(seen) >= 2, {**detail, "error": "fewer than 2 progress notifications"})
        check(all(b >= a for a, b in zip([p for p, _, _ in seen], [p for p, _, _ in seen][1:])),
              {**detail, "error": "progress not monotonic"})
        return detail

    async def s_held(self) -> Any:
        # A call a broker holds for approval (--tool held=NAME, --held-args JSON):
        # the progress callback hears the wait, the result is the tool's once
        # an approver releases it.
        tool = await self.tool_for("held")
        seen: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total, message))

        args = json.loads(self.args.held_args)
        result = await self.call(tool.name, args, progress_callback=on_progress)
        text = result_text(result)
        detail = {"tool": tool.name, "notifications": len(seen), "messages": [m for _, _, m in seen][:5],
                  "text": text[:300], "is_error": bool(result.is_error)}
        check(not result.is_error, {**detail, "error": "tool returned isError"})
        check(len(seen) >= 2, {**detail, "error": "fewer than 2 progress notifications while held"})
        return detail

    async def s_held_task(self) -> Any:
        # The same held call from a client that declared the Tasks extension: the
        # broker answers with a task at once and the client polls tasks/get.
        # --held-expect failed: the approver denied it (the task fails).
        assert self.tasks is not None
        tool = await self.tool_for("held")
        n_before = len(self.tasks.task_ids)
        result = await self.call(tool.name, json.loads(self.args.held_args))
        text = result_text(result)
        ran_as_task = len(self.tasks.task_ids) > n_before
        detail = {"tool": tool.name, "task_id": self.tasks.task_ids[-1] if ran_as_task else None,
                  "statuses": sorted(set(self.tasks.statuses)), "status_messages": self.tasks.status_messages[:3],
                  "text": text[:300], "is_error": bool(result.is_error)}
        check(ran_as_task, {**detail, "error": "the held call was not answered with a task"})
        check("working" in detail["statuses"], {**detail, "error": "never observed status working"})
        if self.args.held_expect == "failed":
            check(bool(result.is_error), {**detail, "error": "expected the task to fail"})
        else:
            check(not result.is_error, {**detail, "error": "task result isError"})
        return detail

    async def s_sampling(self) -> Any:
        tool = await self.tool_for("sampling")
        before = self.cb.sampling_calls
        args: dict[str, Any] = {"prompt": "hoop sampling probe"}
        if "maxTokens" in (tool.input_schema or {}).get("properties", {}):
            args["maxTokens"] = 32
        result = await self.call(tool.name, args)
        text = result_text(result)
        detail = {"tool": tool.name, "callbacks": self.cb.sampling_calls - before}
        check(not result.is_error, {**detail, "error": "tool returned isError", "text": text[:300]})
        check(SAMPLING_REPLY in text, {**detail, "error": "sampling reply not in result", "text": text[:300]})
        return detail

    async def s_elicitation(self) -> Any:
        tool = await self.tool_for("elicitation")
        before = self.cb.elicitation_calls
        args = {"amount": 125} if tool.name == "confirm_transfer" else {}
        result = await self.call(tool.name, args)
        text = result_text(result)
        detail = {"tool": tool.name, "callbacks": self.cb.elicitation_calls - before, "text": text[:300]}
        check(not result.is_error, {**detail, "error": "tool returned isError"})
        check(detail["callbacks"] >= 1, {**detail, "error": "elicitation callback never ran"})
        check(ELICIT_TEXT in text or "confirm=true" in text, {**detail, "error": "elicited answer not in result"})
        return detail

    async def s_input_required(self) -> Any:
        tool = await self.tool_for("input_required")
        before = self.cb.elicitation_calls
        amount = 4242
        result = await self.call(tool.name, {"amount": amount})
        text = result_text(result)
        detail = {
            "tool": tool.name,
            "protocol_version": self.client.protocol_version,
            "mechanism": "input_required"
            if self.client.protocol_version in MODERN_PROTOCOL_VERSIONS
            else "elicitation/create",
            "callbacks": self.cb.elicitation_calls - before,
            "text": text,
        }
        check(not result.is_error, {**detail, "error": "tool returned isError"})
        check(detail["callbacks"] == 1, {**detail, "error": "expected exactly one elicitation round"})
        check(text == f"transfer {amount}: confirm=true note={ELICIT_TEXT}", {**detail, "error": "unexpected answer"})
        return detail

    async def s_task(self) -> Any:
        tool = await self.tool_for("task")
        if tool.name == "simulate-research-query":
            return await self._task_sep1686(tool)
        check(self.tasks is not None, "internal: tasks extension not installed")
        assert self.tasks is not None
        check(self.client.protocol_version in MODERN_PROTOCOL_VERSIONS,
              {"error": "the tasks extension needs a 2026-07-28 connection",
               "protocol_version": self.client.protocol_version})
        n_before = len(self.tasks.task_ids)
        topic = f"hoop-{uuid.uuid4().hex[:8]}"
        result = await self.call(tool.name, {"topic": topic, "sections": 3, "delay_ms": 150})
        text = result_text(result)
        ran_as_task = len(self.tasks.task_ids) > n_before
        detail = {
            "tool": tool.name,
            "task_id": self.tasks.task_ids[-1] if ran_as_task else None,
            "statuses": self.tasks.statuses[-8:],
            "text": text,
        }
        check(ran_as_task, {**detail, "error": "server did not run the call as a task"})
        check(not result.is_error, {**detail, "error": "task result isError"})
        check(text == f"report on {topic}: 3 sections", {**detail, "error": "unexpected task result"})
        check("working" in detail["statuses"], {**detail, "error": "never observed status working"})
        return detail

    async def _task_sep1686(self, tool: types.Tool) -> Any:
        """SEP-1686 (2025-11-25) task-augmented tools/call, as server-everything implements it.

        mcp 2.3.0 has the SEP-1686 types but no client API to send a task-augmented
        tools/call (its tools/call result validation rejects CreateTaskResult), so the
        creating request goes through the session's dispatcher (private API).
        """
        session: ClientSession = self.client.session
        check(self.client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS,
              {"error": "SEP-1686 tasks are a 2025-11-25 feature", "protocol_version": self.client.protocol_version})
        data: dict[str, Any] = {
            "method": "tools/call",
            "params": {"name": tool.name, "arguments": {"topic": "hoop", "ambiguous": False}, "task": {"ttl": 60000}},
        }
        opts: dict[str, Any] = {"timeout": self.args.timeout}
        session._stamp(data, opts)  # pyright: ignore[reportPrivateUsage]
        raw = await session._dispatcher.send_raw_request(  # pyright: ignore[reportPrivateUsage]
            "tools/call", data["params"], opts  # type: ignore[arg-type]
        )
        created = types.CreateTaskResult.model_validate(raw)
        task_id = created.task.task_id
        statuses = [created.task.status]
        while statuses[-1] not in ("completed", "failed", "cancelled"):
            await anyio.sleep(min((created.task.poll_interval or 500) / 1000, 1.0))
            got = await session.send_request(
                types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task_id)), types.GetTaskResult
            )
            statuses.append(got.status)
        detail: dict[str, Any] = {"tool": tool.name, "task_id": task_id, "statuses": statuses}
        check(statuses[-1] == "completed", {**detail, "error": "task did not complete"})
        payload = await session.send_request(
            types.GetTaskPayloadRequest(params=types.GetTaskPayloadRequestParams(task_id=task_id)), types.CallToolResult
        )
        detail["text"] = result_text(payload)[:200]
        check(not payload.is_error and len(payload.content) > 0, {**detail, "error": "empty or error task result"})
        return detail

    async def s_cancel(self) -> Any:
        tool = await self.tool_for("cancel")
        args = progress_args(tool.name, long=True)
        full = expected_seconds(tool.name, args)
        seen: list[float] = []
        first_progress = anyio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(progress)
            first_progress.set()

        outcome: dict[str, Any] = {}
        t0 = time.monotonic()
        async with anyio.create_task_group() as tg:

            async def run_call() -> None:
                try:
                    r = await self.call(tool.name, args, progress_callback=on_progress)
                    outcome["completed"] = True
                    outcome["text"] = result_text(r)[:200]
                except MCPError as e:
                    outcome["error"] = {"code": e.error.code, "message": e.error.message}

            scope = anyio.CancelScope()

            async def cancellable() -> None:
                with scope:
                    await run_call()
                outcome["cancelled_by_client"] = scope.cancelled_caught

            tg.start_soon(cancellable)
            with anyio.move_on_after(min(3.0, full / 2)):
                await first_progress.wait()
            scope.cancel()
        elapsed = time.monotonic() - t0
        detail = {"tool": tool.name, "args": args, "elapsed_s": round(elapsed, 3), "full_s": full,
                  "progress_before_cancel": len(seen), **outcome}
        check(not outcome.get("completed"), {**detail, "error": "call completed instead of being cancelled"})
        check(elapsed < full * 0.8, {**detail, "error": "call did not end early"})
        # The session must still work after the cancellation.
        echo = await self.tool_for("echo")
        key = first_string_arg(echo) or "text"
        text = f"hoop-after-cancel-{uuid.uuid4().hex[:8]}"
        after = result_text(await self.call(echo.name, {key: text}))
        detail["echo_after"] = after[:200]
        check(after in (text, f"Echo: {text}"), {**detail, "error": "echo after cancel failed"})
        return detail

    async def s_logging(self) -> Any:
        tool = await self.tool_for("logging")
        check(self.client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS,
              {"error": "logging/setLevel is a handshake-era request", "protocol_version": self.client.protocol_version})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await self.client.set_logging_level("debug")
        since = len(self.notes.items)
        started = result_text(await self.call(tool.name, {}))
        check(started.startswith("Started"), {"error": "logging did not start", "text": started[:300]})
        is_log = method_is("notifications/message")
        logs = await self.notes.wait(is_log, 2, min(25.0, self.args.timeout / 2), since)
        stopped = result_text(await self.call(tool.name, {}))
        detail = {"tool": tool.name, "logs": len(logs),
                  "levels": [n["params"].get("level") for n in logs],
                  "data": [str(n["params"].get("data"))[:80] for n in logs[:4]],
                  "stopped": stopped[:80], "stream_errors": self.notes.errors[:3]}
        check(len(logs) >= 2, {**detail, "error": "fewer than 2 notifications/message on the GET stream"})
        check(all("message" in str(n["params"].get("data", "")) for n in logs),
              {**detail, "error": "unexpected log data"})
        check(stopped.startswith("Stopped"), {**detail, "error": "logging did not stop"})
        return detail

    async def s_request_logs(self) -> Any:
        tool = await self.tool_for("request_logs")
        modern = self.client.protocol_version in MODERN_PROTOCOL_VERSIONS
        text = f"hoop-log-{uuid.uuid4().hex[:8]}"
        count = 5
        since = len(self.notes.items)
        # 2026-07-28: no log unless the request opts in; handshake era: sent anyway.
        result = await self.call(tool.name, {"text": text, "count": count}, meta={LOG_LEVEL_META_KEY: "debug"})
        returned_at = time.monotonic()
        got = result_text(result)
        logs = self.notes.matching(lambda n: n["method"] == "notifications/message"
                                   and str(n["params"].get("data", "")).startswith(text), since)
        want = [f"{text} #{i}" for i in range(1, count + 1)]
        levels = ["debug", "info", "warning"]
        detail = {"tool": tool.name, "protocol_version": self.client.protocol_version, "opt_in_required": modern,
                  "result": got, "data": [n["params"].get("data") for n in logs],
                  "levels": [n["params"].get("level") for n in logs],
                  "loggers": sorted({str(n["params"].get("logger")) for n in logs})}
        check(not result.is_error and got == f"logged {count}", {**detail, "error": "unexpected result"})
        check(detail["data"] == want, {**detail, "error": "log notifications missing, out of order or altered"})
        check(detail["levels"] == [levels[i % 3] for i in range(count)], {**detail, "error": "levels altered"})
        check(detail["loggers"] == ["chatty"], {**detail, "error": "logger name altered"})
        check(all(n["t"] <= returned_at for n in logs), {**detail, "error": "logs arrived after the result"})
        return detail

    async def s_resource_updates(self) -> Any:
        tool = await self.tool_for("subscriber_updates")
        check(self.client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS,
              {"error": "resources/subscribe is a handshake-era request", "protocol_version": self.client.protocol_version})
        listed = await self.client.list_resources()
        check(len(listed.resources) > 0, "resources/list returned no resources")
        uri = str(listed.resources[0].uri)
        since = len(self.notes.items)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await self.client.subscribe_resource(uri)
        started = result_text(await self.call(tool.name, {}))
        check(started.startswith("Started"), {"error": "updates did not start", "text": started[:300]})
        updated = method_is("notifications/resources/updated", uri=uri)
        updates = await self.notes.wait(updated, 1, min(25.0, self.args.timeout / 2), since)
        stopped = result_text(await self.call(tool.name, {}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await self.client.unsubscribe_resource(uri)
        # server-everything also acknowledges the subscribe with a log message on the GET stream.
        acks = self.notes.matching(
            lambda n: n["method"] == "notifications/message" and uri in str(n["params"].get("data", "")), since)
        detail = {"tool": tool.name, "uri": uri, "updates": len(updates), "subscribe_logs": len(acks),
                  "other_uris": sorted({n["params"].get("uri") for n in self.notes.matching(
                      method_is("notifications/resources/updated"), since)} - {uri}),
                  "stopped": stopped[:80], "stream_errors": self.notes.errors[:3]}
        check(len(updates) >= 1, {**detail, "error": "no notifications/resources/updated for the subscribed URI"})
        check(not detail["other_uris"], {**detail, "error": "updates for URIs never subscribed"})
        check(stopped.startswith("Stopped"), {**detail, "error": "updates did not stop"})
        return detail

    async def s_list_changed(self) -> Any:
        tool = await self.tool_for("list_changed")
        check(self.client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS,
              {"error": "unsolicited list_changed is handshake-era (2026-07-28: use listen)",
               "protocol_version": self.client.protocol_version})
        tag = uuid.uuid4().hex[:8]
        window = min(20.0, self.args.timeout / 2)
        since = len(self.notes.items)
        if tool.name == "gzip-file-as-resource":
            payload = base64.b64encode(f"hoop list_changed {tag}\n".encode()).decode()
            args = {"name": f"hoop-{tag}.txt.gz", "data": f"data:text/plain;base64,{payload}",
                    "outputType": "resourceLink"}
            changed = method_is("notifications/resources/list_changed")
        else:
            args = {"tool_name": f"hoop_added_{tag}", "uri": "fixture://greeting"}
            changed = method_is("notifications/tools/list_changed")
        # The GET stream opens in the background after the handshake: an announcement sent
        # before it is up is dropped by the server, so announce again (bounded) until one lands.
        attempts = 0
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + window
        while not seen and time.monotonic() < deadline:
            attempts += 1
            result = await self.call(tool.name, args)
            check(not result.is_error, {"error": "tool returned isError", "text": result_text(result)[:300]})
            seen = await self.notes.wait(changed, 1, 2.0, since)
        detail: dict[str, Any] = {"tool": tool.name, "attempts": attempts, "notifications": len(seen),
                                  "stream_errors": self.notes.errors[:3]}
        check(len(seen) >= 1, {**detail, "error": "no list_changed notification on the GET stream"})
        if tool.name == "gzip-file-as-resource":
            uris = [str(r.uri) for r in (await self.client.list_resources()).resources]
            detail["new_resource_listed"] = any(u.endswith(f"hoop-{tag}.txt.gz") for u in uris)
            check(detail["new_resource_listed"], {**detail, "error": "added resource not in resources/list"})
        else:
            updates = await self.notes.wait(
                method_is("notifications/resources/updated", uri="fixture://greeting"), 1, 5.0, since)
            detail["resource_updates"] = len(updates)
            self._tools = None
            names = [t.name for t in await self.tools()]
            detail["new_tool_listed"] = args["tool_name"] in names
            check(len(updates) >= 1, {**detail, "error": "no notifications/resources/updated on the GET stream"})
            check(detail["new_tool_listed"], {**detail, "error": "added tool not in tools/list"})
        return detail

    async def s_listen(self) -> Any:
        tool = await self.tool_for("listen")
        check(self.client.protocol_version in MODERN_PROTOCOL_VERSIONS,
              {"error": "subscriptions/listen needs a 2026-07-28 connection",
               "protocol_version": self.client.protocol_version})
        uri = "fixture://greeting"
        new_tool = f"hoop_added_{uuid.uuid4().hex[:8]}"
        since = len(self.notes.items)
        events: list[Any] = []
        detail: dict[str, Any] = {"tool": tool.name}
        async with self.client.listen(tools_list_changed=True, resource_subscriptions=[uri]) as sub:
            honored = sub.honored
            detail["subscription_id"] = sub.subscription_id
            detail["honored"] = honored.model_dump(mode="json", by_alias=True, exclude_none=True)
            check(honored.tools_list_changed is True and uri in (honored.resource_subscriptions or []),
                  {**detail, "error": "the server did not honor the requested filter"})
            result = await self.call(tool.name, {"tool_name": new_tool, "uri": uri})
            check(not result.is_error, {**detail, "error": "announce_changes failed", "text": result_text(result)})
            want = {ToolsListChanged(), ResourceUpdated(uri=uri)}
            with anyio.move_on_after(min(20.0, self.args.timeout / 2)):
                async for event in sub:
                    events.append(event)
                    if want <= set(events):
                        break
        detail["events"] = [repr(e) for e in events]
        check({ToolsListChanged(), ResourceUpdated(uri=uri)} <= set(events),
              {**detail, "error": "listen stream did not deliver both events"})
        stamped = self.notes.matching(lambda n: n["method"] in (
            "notifications/tools/list_changed", "notifications/resources/updated"), since)
        detail["stamps"] = sorted({str(n["params"].get("_meta", {}).get(SUBSCRIPTION_ID_META_KEY)) for n in stamped})
        check(detail["stamps"] == [str(detail["subscription_id"])],
              {**detail, "error": "events not stamped with the listen request's id"})
        self._tools = None
        detail["new_tool_listed"] = new_tool in [t.name for t in await self.tools()]
        check(detail["new_tool_listed"], {**detail, "error": "added tool not in tools/list"})
        # The closed listen stream must leave the client usable.
        text = f"hoop-after-listen-{uuid.uuid4().hex[:8]}"
        after = result_text(await self.call("echo", {"text": text}))
        check(after == text, {**detail, "error": "echo after listen failed", "echo": after[:200]})
        return detail

    async def s_big(self) -> Any:
        tool = await self.tool_for("big")
        n = self.args.big_bytes
        t0 = time.monotonic()
        want = big_text(n)
        echo_key = None if tool.name == "big_payload" else first_string_arg(tool)
        if echo_key is not None:
            # An echo-like tool (--tool big=echo): the payload travels both ways.
            result = await self.call(tool.name, {echo_key: want})
        else:
            result = await self.call(tool.name, {"bytes": n})
        got = result_text(result)
        if echo_key is not None and got.startswith("Echo: "):
            got = got[len("Echo: "):]
        detail = {"tool": tool.name, "requested": n, "received": len(got), "seconds": round(time.monotonic() - t0, 3),
                  "via": "echo" if echo_key is not None else "bytes"}
        check(not result.is_error, {**detail, "error": "tool returned isError", "text": got[:300]})
        check(len(got) == n, {**detail, "error": "length mismatch"})
        check(got == want, {**detail, "error": "content mismatch"})
        return detail


SCENARIOS: dict[str, Callable[[Runner], Awaitable[Any]]] = {
    "negotiated": Runner.s_negotiated,  # prints the negotiated protocol version (+ asserts per --mode)
    "list_tools": Runner.s_list_tools,  # tools/list, prints tool names
    "echo": Runner.s_echo,  # echo tool, unique text round trip
    "masking": Runner.s_masking,  # get_customer + echo of protected data; prints what came back
    "carriers": Runner.s_carriers,  # MASKING_PROBE via result, logs, sampling/input_required, prompt, task
    "resources": Runner.s_resources,  # resources/list + read the first
    "prompts": Runner.s_prompts,  # prompts/list + get the first
    "progress": Runner.s_progress,  # long tool with progress callback, >= 2 notifications
    "held": Runner.s_held,  # a call held for approval: progress while held, then the tool's result
    "held_task": Runner.s_held_task,  # the same, answered as a task (Tasks extension) and polled
    "sampling": Runner.s_sampling,  # server asks client to sample; fixed reply must come back
    "elicitation": Runner.s_elicitation,  # server asks client for form input
    "input_required": Runner.s_input_required,  # confirm_transfer: exactly one elicitation round
    "task": Runner.s_task,  # task-augmented call polled to completion
    "cancel": Runner.s_cancel,  # cancel a long call, then echo on the same client
    "big": Runner.s_big,  # >= 5 MiB result, exact length + content
    "logging": Runner.s_logging,  # logging/setLevel + periodic notifications/message on the GET stream
    "request_logs": Runner.s_request_logs,  # log notifications on the call's own stream, in order
    "resource_updates": Runner.s_resource_updates,  # resources/subscribe -> notifications/resources/updated
    "list_changed": Runner.s_list_changed,  # handshake-era list_changed on the GET stream + refetch
    "listen": Runner.s_listen,  # 2026-07-28 subscriptions/listen events
}


def first_string_arg(tool: types.Tool) -> str | None:
    schema = tool.input_schema or {}
    props = schema.get("properties", {})
    for name in schema.get("required", []) or []:
        if props.get(name, {}).get("type") == "string":
            return name
    for name, p in props.items():
        if p.get("type") == "string":
            return name
    return None


def progress_args(tool: str, *, long: bool) -> dict[str, Any]:
    if tool == "slow_count":
        return {"steps": 100, "delay_ms": 100} if long else {"steps": 4, "delay_ms": 100}
    if tool in ("trigger-long-running-operation", "longRunningOperation"):
        return {"duration": 20, "steps": 20} if long else {"duration": 1, "steps": 4}
    return {}


def expected_seconds(tool: str, args: dict[str, Any]) -> float:
    if tool == "slow_count":
        return args["steps"] * args["delay_ms"] / 1000
    if "duration" in args:
        return float(args["duration"])
    return 10.0


def describe(exc: BaseException) -> str:
    """`Type: message`, with exception groups flattened to their leaf exceptions."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def emit(scenario: str, ok: bool, detail: Any) -> None:
    print(json.dumps({"scenario": scenario, "ok": ok, "detail": detail}, default=str), flush=True)


async def run_one(runner: Runner, name: str) -> bool:
    """Run one scenario under its timeout and print its line; True when it passed."""
    args = runner.args
    try:
        with anyio.fail_after(args.timeout):
            detail = await SCENARIOS[name](runner)
        emit(name, True, detail)
        return True
    except ScenarioFailed as e:
        emit(name, False, e.detail)
    except TimeoutError:
        emit(name, False, f"timed out after {args.timeout}s")
    except MCPError as e:
        emit(name, False, {"mcp_error": e.error.code, "message": e.error.message, "data": e.error.data})
    except Exception as e:  # noqa: BLE001 - any failure is reported per scenario
        emit(name, False, describe(e))
        if args.verbose:
            traceback.print_exc()
    return False


async def amain(args: argparse.Namespace) -> int:
    cb = Callbacks()
    notes = Notes()
    # The scenarios that read a result through tasks/get declare the extension.
    tasks = TasksClient(args.timeout) if {"task", "carriers", "held_task"} & set(args.scenario) else None
    mode = {"auto": "auto", "handshake": "legacy", "modern": "2026-07-28"}[args.mode]
    headers = dict(args.header_map)
    timeout = httpx2.Timeout(args.timeout, read=max(args.timeout, 60.0))
    failed = 0
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        transport = streamable_http_client(args.url, http_client=http, max_sse_event_size=256 * 1024 * 1024)
        client = Client(
            transport,
            mode=mode,
            read_timeout_seconds=args.timeout,
            sampling_callback=cb.sampling,
            elicitation_callback=cb.elicitation,
            message_handler=notes.handle,
            client_info=types.Implementation(name="hoop-e2e-python-client", version="1.0.0"),
            extensions=[tasks] if tasks is not None else None,
            cache=None,
        )
        entered = False
        try:
            async with client:
                entered = True
                runner = Runner(client, args, cb, tasks, notes)
                for name in args.scenario:
                    if not await run_one(runner, name):
                        failed += 1
        except Exception as exc:  # noqa: BLE001 - reported, then exit 1
            msg = describe(exc)
            if entered:
                print(f"mcp_client: client failed: {msg}", file=sys.stderr)
                return 1
            for name in args.scenario:
                emit(name, False, f"connect failed: {msg}")
            print(f"mcp_client: connect failed: {msg}", file=sys.stderr)
            if args.verbose:
                traceback.print_exc()
            return 1
    return 1 if failed else 0


def parse_kv(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"mcp_client: {what} must be KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--mode", choices=["auto", "handshake", "modern"], default="auto")
    ap.add_argument("--header", action="append", default=[], metavar="K=V", help="extra HTTP header (repeatable)")
    ap.add_argument("--scenario", action="append", default=[], choices=sorted(SCENARIOS), help="repeatable")
    ap.add_argument("--tool", action="append", default=[], metavar="ROLE=NAME", help="tool name for a role")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds, for connect and for each scenario")
    ap.add_argument("--big-bytes", type=int, default=5 * 1024 * 1024 + 321)
    ap.add_argument("--held-args", default="{}", help="held: the tool's arguments, a JSON object")
    ap.add_argument("--held-expect", choices=["ok", "failed"], default="ok", help="held_task: how the task ends")
    ap.add_argument("--expect-version", help="negotiated: also assert this protocol version")
    ap.add_argument("--verbose", action="store_true", help="tracebacks on stderr")
    args = ap.parse_args()
    if not args.scenario:
        ap.error("at least one --scenario is required")
    args.header_map = parse_kv(args.header, "--header")
    args.tool_map = parse_kv(args.tool, "--tool")
    unknown = set(args.tool_map) - set(ROLE_CANDIDATES)
    if unknown:
        ap.error(f"unknown --tool role(s) {sorted(unknown)}; roles: {sorted(ROLE_CANDIDATES)}")
    try:
        # Hard stop: every scenario is bounded, and so is the whole run.
        with_deadline = args.timeout * (len(args.scenario) + 2) + 10
        return anyio.run(_bounded, args, with_deadline)
    except KeyboardInterrupt:
        return 130


async def _bounded(args: argparse.Namespace, deadline: float) -> int:
    try:
        with anyio.fail_after(deadline):
            return await amain(args)
    except TimeoutError:
        print(f"mcp_client: overall deadline of {deadline:.0f}s exceeded", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
