"""The journal-growth benchmark's agent: one conversation of ``turns`` turns through the
model door with the openai SDK, each turn adding ``turn_bytes`` of the user's (or a tool's)
text and the model's answer, the whole history sent every time as Chat Completions does."""

from openai import OpenAI

WORDS = "the quick brown fox jumps over the lazy dog while a tool returns a page of text ".split()


def _text(turn: int, size: int) -> str:
    words = (f"{WORDS[(turn + i) % len(WORDS)]}{turn}" for i in range(size))
    return " ".join(words)[:size]


def run(ctx):
    client = OpenAI(max_retries=0)
    history = [{"role": "system", "content": "You are a careful assistant."}]
    for turn in range(ctx.input["turns"]):
        history.append({"role": "user", "content": _text(turn, ctx.input["turn_bytes"])})
        reply = client.chat.completions.create(model="default", messages=history)
        history.append({"role": "assistant", "content": reply.choices[0].message.content})
    return sum(len(m["content"]) for m in history)
