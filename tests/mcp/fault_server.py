"""An MCP server written with the ``mcp`` SDK, for corral's fault tests.

Run as ``python fault_server.py stdio [options]`` or ``python fault_server.py http PORT
[options]``. Its tools misbehave on request: ``crash`` kills the server mid-call, ``hang``
never answers, ``big`` returns as many bytes as asked, ``fail`` answers ``isError``,
``environment`` names the variables it was started with.
``write`` appends a line to ``calls.log`` in its folder (with the idempotency key corral
sends in ``_meta``), so a test can count side effects. Options:

- ``--variant`` (or a file ``variant`` in its folder): ``echo`` takes another argument (the
  tool list changed since a run began);
- ``--bad-schema``: the ``broken`` tool's inputSchema is not valid JSON Schema;
- ``--fail-start``: write a reason on stderr and exit 2 before serving;
- ``--http-faults FILE`` (http): each request first reads FILE; a line ``401``, ``503`` or
  ``429 SECONDS`` there is answered as that status (one line is used up per request).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from mcp_types import ToolAnnotations

from mcp.server.mcpserver import Context, MCPServer

HERE = Path.cwd()
args = sys.argv[1:]
if "--fail-start" in args:
    print("fault_server: cannot open the database /nonexistent/db (refusing to start)", file=sys.stderr)
    sys.exit(2)

server = MCPServer("corral-fault-server")
READ_ONLY = ToolAnnotations(readOnlyHint=True)


def _key(ctx: Context) -> str:
    meta = ctx.request_context.meta if ctx.request_context else None
    data = meta.model_dump() if hasattr(meta, "model_dump") else dict(meta or {})
    return str(data.get("io.corral/idempotency-key", ""))


if "--variant" in args or (HERE / "variant").exists():

    @server.tool(annotations=READ_ONLY)
    def echo(text: str, times: int) -> str:
        """Say it back, several times."""
        return text * times

else:

    @server.tool(annotations=READ_ONLY)
    def echo(text: str) -> str:
        """Say it back."""
        return text


@server.tool(annotations=ToolAnnotations(idempotentHint=True))
def touch(name: str, ctx: Context) -> str:
    """Record a call that is safe to repeat."""
    with open(HERE / "calls.log", "a") as log:
        log.write(f"touch {name} {_key(ctx)}\n")
    if (HERE / "slow").exists():
        time.sleep(float((HERE / "slow").read_text() or 30))
    return f"touched {name}"


@server.tool()
def write(note: str, ctx: Context) -> str:
    """Append a note (not idempotent, unannotated)."""
    with open(HERE / "calls.log", "a") as log:
        log.write(f"write {note} {_key(ctx)}\n")
    if (HERE / "slow").exists():
        time.sleep(float((HERE / "slow").read_text() or 30))
    return f"wrote {note}"


@server.tool(annotations=ToolAnnotations(destructiveHint=True))
def delete(what: str) -> str:
    """Delete something (destructive)."""
    return f"deleted {what}"


@server.tool(annotations=READ_ONLY)
def crash() -> str:
    """Die in the middle of the call."""
    os._exit(3)


@server.tool()
def crash_write(note: str) -> str:
    """Die in the middle of a call that is not idempotent."""
    os._exit(3)


@server.tool(annotations=READ_ONLY)
def hang() -> str:
    """Never answer."""
    time.sleep(3600)
    return "late"


@server.tool(annotations=READ_ONLY)
def big(size: int) -> str:
    """Answer ``size`` bytes."""
    return "x" * size


@server.tool(annotations=READ_ONLY)
def fail() -> str:
    """Fail the call (isError)."""
    raise ValueError("the upstream said no")


@server.tool(annotations=READ_ONLY)
def environment() -> list[str]:
    """Answer the names of the variables in the server's environment."""
    return sorted(os.environ)


@server.tool(annotations=READ_ONLY)
def structured(n: int) -> dict[str, Any]:
    """Answer structured content."""
    return {"n": n, "double": n * 2}


if "--bad-schema" in args:

    @server.tool(annotations=READ_ONLY)
    def broken(x: str) -> str:
        """A tool whose schema the server gets wrong."""
        return x

    server._tool_manager._tools["broken"].parameters = {"type": "object", "properties": {"x": {"type": "strang"}}}


def _http(port: int, faults: Path | None) -> None:
    import uvicorn
    from starlette.responses import JSONResponse

    app = server.streamable_http_app()

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and faults is not None and faults.exists():
            lines = faults.read_text().splitlines()
            if lines:
                faults.write_text("".join(f"{line}\n" for line in lines[1:]))
                status, *rest = lines[0].split()
                headers = {"Retry-After": rest[0]} if rest else {}
                response = JSONResponse({"error": f"fault {status}"}, status_code=int(status), headers=headers)
                await response(scope, receive, send)
                return
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            with open(HERE / "headers.log", "a") as log:
                log.write(f"{auth}\n")
        await app(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    if args[0] == "http":
        faults = Path(args[args.index("--http-faults") + 1]) if "--http-faults" in args else None
        _http(int(args[1]), faults)
    else:
        server.run("stdio")
