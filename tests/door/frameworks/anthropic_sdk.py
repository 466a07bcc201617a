from anthropic import Anthropic


def run(ctx):
    messages = [{"role": "user", "content": ctx.input}]
    with Anthropic().messages.stream(model="default", max_tokens=500, messages=messages) as stream:
        return stream.get_final_message().content[0].text
