"""The journal-readers benchmark's agent (an attacker's shape): a conversation through the
model door whose first request carries ``history`` messages and each later one the one
before and a message more, ``requests`` requests in all."""

from openai import OpenAI


def run(ctx):
    client = OpenAI(max_retries=0)
    history = [{"role": "user", "content": f"m{i}"} for i in range(ctx.input["history"])]
    for turn in range(ctx.input["requests"]):
        history.append({"role": "user", "content": f"turn {turn}"})
        client.chat.completions.create(model="default", messages=history)
    return len(history)
