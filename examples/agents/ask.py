"""Example agent written with the plain openai SDK: no corral import for its model call.

corral points the SDK at the run's model door (OPENAI_BASE_URL and OPENAI_API_KEY are
set for it), so ``OpenAI()`` needs no argument and no key; the call is journaled,
budgeted and retried like ``ctx.model``. Its model is the example's ``provider = "auto"``:
with no API key and no local Ollama, the door answers "not configured" with the setting
to add, and the run says so. Manual only: ``corral run ask --wait``.
"""


def run(ctx):
    try:
        from openai import APIStatusError, OpenAI
    except ImportError:
        return {"answer": None, "not_installed": "this example uses the openai SDK: pip install openai"}
    question = (ctx.input or {}).get("question", "Why journal every model call?")
    try:
        reply = OpenAI().chat.completions.create(
            model="default", messages=[{"role": "user", "content": question}], max_tokens=120
        )
    except APIStatusError as exc:
        if (exc.body or {}).get("code") != "not_configured":
            raise
        return {"answer": None, "not_configured": exc.message}
    return {"answer": reply.choices[0].message.content}
