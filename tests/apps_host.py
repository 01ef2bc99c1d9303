"""A small MCP Apps host for browser tests: a page that embeds a tool's `ui://` view in a sandboxed iframe and
relays the view's JSON-RPC (SEP-1865: ui/initialize, tool input and result notifications, tools/call) to the real
align-mcp server through the SDK's in-memory Client, which declares the MCP Apps extension."""

from __future__ import annotations

import json
from typing import Any

APPS_EXTENSION = "io.modelcontextprotocol/ui"
APP_MIME = "text/html;profile=mcp-app"

HOST_PAGE = """<!doctype html>
<html><head><meta charset=utf-8><title>test host</title></head>
<body>
<p id=host-state>starting</p>
<script>
"use strict";
window.hostLog = [];
async function mcp(method, params) {
  const response = await fetch("/mcp", {
    method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify({method, params}),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error);
  return body.result;
}
async function start() {
  const query = new URLSearchParams(location.search);
  const name = query.get("tool");
  const args = JSON.parse(query.get("args"));
  const listed = await mcp("tools/list", {});
  const tool = listed.tools.find((t) => t.name === name);
  const uri = tool._meta.ui.resourceUri;
  const read = await mcp("resources/read", {uri});
  const content = read.contents[0];
  window.viewMime = content.mimeType;
  const frame = document.createElement("iframe");
  frame.id = "view";
  frame.setAttribute("sandbox", "allow-scripts");
  frame.style.width = "900px";
  frame.style.height = "1400px";
  const called = mcp("tools/call", {name, arguments: args});
  window.addEventListener("message", async (event) => {
    if (event.source !== frame.contentWindow) return;
    const message = event.data;
    window.hostLog.push(message.method || "response");
    const reply = (part) => frame.contentWindow.postMessage(Object.assign({jsonrpc: "2.0", id: message.id}, part), "*");
    const notify = (method, params) => frame.contentWindow.postMessage({jsonrpc: "2.0", method, params}, "*");
    if (message.method === "ui/initialize") {
      reply({result: {protocolVersion: message.params.protocolVersion, hostInfo: {name: "test host", version: "1"},
        hostCapabilities: {serverTools: {}}, hostContext: {theme: "light", displayMode: "inline"}}});
    } else if (message.method === "ui/notifications/initialized") {
      notify("ui/notifications/tool-input", {arguments: args});
      notify("ui/notifications/tool-result", await called);
      document.getElementById("host-state").textContent = "shown";
    } else if (message.method === "ui/notifications/size-changed") {
      window.viewSize = message.params;
    } else if (message.method === "tools/call") {
      try {
        reply({result: await mcp("tools/call", message.params)});
      } catch (e) {
        reply({error: {code: -32603, message: String(e.message)}});
      }
    } else if (message.id !== undefined) {
      reply({error: {code: -32601, message: "not supported by the test host"}});
    }
  });
  frame.srcdoc = content.text;
  document.body.appendChild(frame);
}
start().catch((e) => { document.getElementById("host-state").textContent = "failed: " + e.message; });
</script>
</body></html>
"""


def host_app(server: Any) -> Any:
    """The host page at /host?tool=NAME&args=JSON, and /mcp relaying tools/list, resources/read and tools/call to
    `server` through an in-memory Client that declares MCP Apps support."""
    from mcp import Client
    from mcp.client import advertise
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    def dumped(model: Any) -> Any:
        return json.loads(model.model_dump_json(by_alias=True, exclude_none=True))

    async def relay(request: Request) -> Response:
        body = await request.json()
        method, params = body["method"], body.get("params") or {}
        apps = advertise(APPS_EXTENSION, {"mimeTypes": [APP_MIME]})
        async with Client(server, cache=None, extensions=[apps]) as client:
            if method == "tools/list":
                result = await client.list_tools()
            elif method == "resources/read":
                result = await client.read_resource(params["uri"])
            elif method == "tools/call":
                result = await client.call_tool(params["name"], params.get("arguments") or {})
            else:
                return JSONResponse({"error": f"method {method} is not relayed"}, status_code=400)
        return JSONResponse({"result": dumped(result)})

    async def host(_: Request) -> Response:
        return HTMLResponse(HOST_PAGE)

    return Starlette(routes=[Route("/host", host), Route("/mcp", relay, methods=["POST"])])
