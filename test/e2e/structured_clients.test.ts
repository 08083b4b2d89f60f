// Structured outputs and tool calls through the clients people use, against the spawned server:
// the openai SDK (json_schema, chat.completions.parse with zod), LangChain (withStructuredOutput,
// bindTools) and the Vercel AI SDK (generateObject over both APIs, streamText with tools).
// Each result is checked by the client's own parsing and again by zod.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { createOpenAI } from "@ai-sdk/openai";
import { ChatOpenAI } from "@langchain/openai";
import { generateObject, streamText, tool } from "ai";
import OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
import { z } from "zod";

import { BUNDLED_GQA } from "../helpers.js";
import { startServer, type ServerProcess } from "./server_process.js";

let server: ServerProcess;
before(async () => {
  server = await startServer(["--model", BUNDLED_GQA, "--served-model-name", "tiny"]);
});
after(async () => {
  await server.stop();
});

// Bounded fields, so the small bundled model always completes them.
const Weather = z.object({
  city: z.string().max(10),
  degrees: z.number().int().min(-40).max(50),
  sky: z.enum(["sunny", "cloudy", "rain"]),
});
const AddArgs = z.object({ a: z.number().int().min(0).max(99), b: z.number().int().min(0).max(99) });
const CityArgs = z.object({ city: z.string().max(10) });

describe("openai SDK", () => {
  it("response_format json_schema, and chat.completions.parse with a zod schema", async () => {
    const client = new OpenAI({ baseURL: server.baseURL, apiKey: "none" });
    const schema = { type: "object", properties: { answer: { enum: ["yes", "no"] }, confidence: { type: "integer", minimum: 1, maximum: 5 } }, required: ["answer", "confidence"], additionalProperties: false };
    const r = await client.chat.completions.create({
      model: "tiny", messages: [{ role: "user", content: "Is it raining?" }], max_tokens: 60, seed: 1,
      response_format: { type: "json_schema", json_schema: { name: "verdict", schema, strict: true } },
    });
    const v = JSON.parse(r.choices[0]!.message.content!);
    assert.ok(["yes", "no"].includes(v.answer) && Number.isInteger(v.confidence) && v.confidence >= 1 && v.confidence <= 5, JSON.stringify(v));
    for (const seed of [1, 2]) {
      const parsed = await client.chat.completions.parse({
        model: "tiny", messages: [{ role: "user", content: "Weather report" }], max_tokens: 80, seed,
        response_format: zodResponseFormat(Weather, "weather"),
      });
      const w = parsed.choices[0]!.message.parsed;
      assert.ok(w, parsed.choices[0]!.message.content ?? "");
      Weather.parse(w);
    }
  });

  it("forced tool calls name the right function with valid arguments", async () => {
    const client = new OpenAI({ baseURL: server.baseURL, apiKey: "none" });
    const tools: OpenAI.Chat.ChatCompletionTool[] = [
      { type: "function", function: { name: "add", description: "Add", parameters: z.toJSONSchema(AddArgs) as Record<string, unknown> } },
      { type: "function", function: { name: "weather", description: "Weather", parameters: z.toJSONSchema(CityArgs) as Record<string, unknown> } },
    ];
    const r = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "weather?" }], tools, tool_choice: { type: "function", function: { name: "weather" } }, max_tokens: 40 });
    const call = r.choices[0]!.message.tool_calls![0]!;
    assert.equal(call.type, "function");
    assert.equal(call.type === "function" && call.function.name, "weather");
    CityArgs.parse(JSON.parse(call.type === "function" ? call.function.arguments : ""));
    // Streamed through the SDK's own accumulation (chat.completions.stream).
    const stream = client.chat.completions.stream({ model: "tiny", messages: [{ role: "user", content: "sum?" }], tools, tool_choice: "required", parallel_tool_calls: false, max_tokens: 60, seed: 3 });
    const done = await stream.finalChatCompletion();
    const c = done.choices[0]!.message.tool_calls![0]!;
    assert.equal(done.choices[0]!.finish_reason, "tool_calls");
    assert.ok(c.type === "function");
    (c.function.name === "add" ? AddArgs : CityArgs).parse(JSON.parse(c.function.arguments));
  });
});

describe("LangChain", () => {
  const chat = () => new ChatOpenAI({ model: "tiny", apiKey: "none", configuration: { baseURL: server.baseURL }, maxTokens: 80, temperature: 0.7 });

  it("withStructuredOutput, by json schema and by function calling", async () => {
    for (const method of ["jsonSchema", "functionCalling"] as const) {
      const out = await chat().withStructuredOutput(Weather, { name: "weather", method }).invoke("Give me a weather report.");
      Weather.parse(out);
    }
  });

  it("bindTools with a forced tool", async () => {
    const tools = [
      { type: "function" as const, function: { name: "add", description: "Add two numbers", parameters: z.toJSONSchema(AddArgs) } },
      { type: "function" as const, function: { name: "weather", description: "Weather in a city", parameters: z.toJSONSchema(CityArgs) } },
    ];
    const msg = await chat().bindTools(tools, { tool_choice: "add" }).invoke("What is 2 + 2?");
    assert.equal(msg.tool_calls?.length, 1);
    assert.equal(msg.tool_calls![0]!.name, "add");
    AddArgs.parse(msg.tool_calls![0]!.args);
    const any = await chat().bindTools(tools, { tool_choice: "any", parallel_tool_calls: false }).invoke("Weather in Rome?");
    assert.ok(any.tool_calls!.length >= 1);
    for (const c of any.tool_calls!) (c.name === "add" ? AddArgs : CityArgs).parse(c.args);
  });
});

describe("Vercel AI SDK", () => {
  it("generateObject over the Responses API and over chat completions", async () => {
    const provider = createOpenAI({ baseURL: server.baseURL, apiKey: "none" });
    for (const model of [provider("tiny"), provider.chat("tiny")]) {
      const { object } = await generateObject({ model, schema: Weather, prompt: "Weather report.", maxOutputTokens: 80, seed: 2 });
      Weather.parse(object);
    }
  });

  it("streamText with tools: a required call, streamed", async () => {
    const provider = createOpenAI({ baseURL: server.baseURL, apiKey: "none" });
    const result = streamText({
      model: provider.chat("tiny"), prompt: "Add 3 and 4.", maxOutputTokens: 60, seed: 5,
      tools: { add: tool({ description: "Add two numbers", inputSchema: AddArgs }) },
      toolChoice: { type: "tool", toolName: "add" },
    });
    let deltas = 0;
    for await (const part of result.fullStream) if (part.type === "tool-input-delta") deltas++;
    const calls = await result.toolCalls;
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.toolName, "add");
    AddArgs.parse(calls[0]!.input);
    assert.ok(deltas >= 1);
  });
});
