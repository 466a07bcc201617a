// A corral command agent in TypeScript: the npm `openai` package through the model door, its
// state and log through corral's HTTP API, no corral import. tests/e2e/test_typescript_agent.py
// compiles it with tsc and runs it under `corral run --wait`; $CORRAL_INPUT's "mode" picks what it does.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import OpenAI from "openai";

type Input = { mode: "calls" | "budget" | "resume" };

const api = process.env.CORRAL_API_URL!;
const headers = { authorization: `Bearer ${process.env.CORRAL_DOOR_TOKEN}`, "content-type": "application/json" };

async function setState(key: string, value: unknown): Promise<number> {
  const url = `${api}/state/${encodeURIComponent(key)}`;
  const answer = await fetch(url, { method: "PUT", headers, body: JSON.stringify({ value }) });
  return answer.status;
}

async function log(event: string, fields: Record<string, unknown>): Promise<void> {
  await fetch(`${api}/log`, { method: "POST", headers, body: JSON.stringify({ level: "info", event, fields }) });
}

const client = new OpenAI(); // OPENAI_BASE_URL and OPENAI_API_KEY: the door and the run's token

async function ask(content: string): Promise<string | null> {
  const reply = await client.chat.completions.create({ model: "fake", messages: [{ role: "user", content }] });
  return reply.choices[0].message.content;
}

async function calls(): Promise<unknown> {
  const first = await ask("hello");
  const stream = await client.chat.completions.create({
    model: "fake",
    messages: [{ role: "user", content: "stream it" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let streamed = "";
  let tokens = 0;
  for await (const chunk of stream) {
    streamed += chunk.choices[0]?.delta?.content ?? "";
    tokens = chunk.usage?.completion_tokens ?? tokens;
  }
  const add = {
    type: "function" as const,
    function: {
      name: "add",
      parameters: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } } },
    },
  };
  const withTools = await client.chat.completions.create({
    model: "fake",
    messages: [{ role: "user", content: "2 + 3?" }],
    tools: [add],
  });
  const call = withTools.choices[0].message.tool_calls?.[0];
  const tool = call?.type === "function" ? [call.function.name, JSON.parse(call.function.arguments)] : null;
  const stored = await setState("first", first);
  await log("asked", { first, tokens });
  const models = (await client.models.list()).data.map((model) => model.id).sort();
  return { first, streamed, tokens, tool, stored, models };
}

async function budget(): Promise<unknown> {
  const first = await ask("one");
  try {
    await ask("two");
    return [first, "no error"];
  } catch (error) {
    if (error instanceof OpenAI.RateLimitError) {
      return [first, error.status, error.message];
    }
    throw error;
  }
}

async function resume(): Promise<unknown> {
  const answers: (string | null)[] = [];
  for (let i = 0; i < 3; i++) {
    if (i === 2) {
      writeFileSync("asked-two", "");
      while (!existsSync("go")) {
        await new Promise((done) => setTimeout(done, 50));
      }
    }
    answers.push(await ask(`question ${i}`));
    await setState(`answer ${i}`, answers[i]);
  }
  return answers;
}

const input: Input = JSON.parse(readFileSync(process.env.CORRAL_INPUT!, "utf8"));
const modes = { calls, budget, resume };
modes[input.mode]().then(
  (result) => writeFileSync(process.env.CORRAL_RESULT!, JSON.stringify(result)),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
