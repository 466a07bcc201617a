"""Example agent that needs a model: a one-sentence summary of its input, kept in a file.

Its model is ``provider = "auto"``: an API key in the daemon's environment
(ANTHROPIC_API_KEY or OPENAI_API_KEY) or a local Ollama. With none of them, the call
is answered "not configured" with the exact setting to add, and the run says so.
"""

import corral


def run(ctx):
    text = (ctx.input or {}).get("text", "")
    try:
        reply = ctx.model(
            [{"role": "user", "text": f"Summarise in one sentence:\n\n{text}"}],
            max_tokens=120,
        )
    except corral.ModelCallError as exc:
        if exc.kind != "not_configured":
            raise
        ctx.log.warning("no model configured; nothing summarised", fix=str(exc))
        return {"summary": None, "not_configured": str(exc)}
    ctx.tool("append_line", path="summaries.txt", line=reply.text.strip())
    return {"summary": reply.text.strip(), "tokens": reply.usage.input_tokens + reply.usage.output_tokens}
