"""Example agent: counts its runs and keeps a journal of them in its workdir.

Offline and deterministic; shows ctx.state (memory across runs) and journaled tool
calls that are never repeated after a crash.
"""


def run(ctx):
    count = ctx.state.get("count", 0) + 1
    ctx.state["count"] = count
    total = ctx.tool("append_line", path="runs.txt", line=f"run #{count} ({ctx.run_id})")
    ctx.log.info("counted", count=count, lines=total)
    return {"count": count, "lines": total}
