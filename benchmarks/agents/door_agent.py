"""The model door benchmark's agent: the same openai SDK calls, one through the door and one
straight to the model server, alternating, each timed here; plain and streamed (the time to
the first content chunk, and to the end); and the same question through ``ctx.model``, the
journaled path without HTTP, so the door's own share can be told from the journal's."""

import time

from openai import OpenAI


def _timed(client: OpenAI, stream: bool, n: int) -> tuple[float, float]:
    """(seconds to the first content, seconds to the end) of call ``n`` (each asks something
    else: the guardrails stop a run that repeats itself)."""
    messages = [{"role": "user", "content": f"What is 2 + {n}?"}]
    began = time.perf_counter()
    if not stream:
        client.chat.completions.create(model="fake", messages=messages, max_tokens=20)
        ended = time.perf_counter() - began
        return ended, ended
    first = None
    for chunk in client.chat.completions.create(model="fake", messages=messages, max_tokens=20, stream=True):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - began
    return first or 0.0, time.perf_counter() - began


def run(ctx):
    calls, direct_url = ctx.input["calls"], ctx.input["direct"]
    sides = {"door": OpenAI(max_retries=0), "direct": OpenAI(base_url=direct_url, api_key="none", max_retries=0)}
    out = {f"{side}_{what}": [] for side in sides for what in ("call", "first", "streamed")}
    out["ctx_call"] = []
    for i in range(calls):
        began = time.perf_counter()
        ctx.model([{"role": "user", "text": f"What is 3 + {i}?"}], max_tokens=20)
        out["ctx_call"].append(time.perf_counter() - began)
        for side in ("door", "direct") if i % 2 == 0 else ("direct", "door"):
            out[f"{side}_call"].append(_timed(sides[side], False, 2 * i)[1])
            first, whole = _timed(sides[side], True, 2 * i + 1)
            out[f"{side}_first"].append(first)
            out[f"{side}_streamed"].append(whole)
    return out
