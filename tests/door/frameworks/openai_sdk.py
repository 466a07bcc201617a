from openai import OpenAI


def run(ctx):
    client = OpenAI()
    reply = client.chat.completions.create(model="default", messages=[{"role": "user", "content": ctx.input}])
    return reply.choices[0].message.content
