"""Example agent: summarises the counter's notes into word frequencies.

Offline; reads a file in its own workdir, calls a pure tool, and remembers the most
frequent word between runs.
"""


def run(ctx):
    topic = (ctx.input or {}).get("topic", "corral keeps agents running unattended")
    ctx.tool("append_line", path="topics.txt", line=topic)
    recent = ctx.tool("read_lines", path="topics.txt", last=20)
    counts = ctx.tool("word_count", text=" ".join(recent))
    top = next(iter(counts), None)
    previous = ctx.state.get("top")
    ctx.state["top"] = top
    ctx.log.info("digest", top=top, previous=previous, words=len(counts))
    return {"top": top, "changed": top != previous, "distinct_words": len(counts)}
