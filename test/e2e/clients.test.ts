// Real clients against the spawned server: the openai SDK's Responses API, the Vercel AI SDK's
// default provider (which calls /v1/responses), and a page in headless Chromium that streams a
// chat completion with fetch (CORS) and reads the WebSocket.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { after, before, describe, it } from "node:test";

import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText } from "ai";
import OpenAI from "openai";
import { chromium } from "playwright-core";

import { BUNDLED_GQA } from "../helpers.js";
import { startServer, type ServerProcess } from "./server_process.js";

let server: ServerProcess;
before(async () => {
  server = await startServer(["--model", BUNDLED_GQA, "--served-model-name", "tiny"]);
});
after(async () => {
  await server.stop();
});

describe("the openai SDK's Responses API", () => {
  it("responses.create, whole and streamed", async () => {
    const client = new OpenAI({ baseURL: server.baseURL, apiKey: "none" });
    const r = await client.responses.create({ model: "tiny", input: "Prince Andrew said", max_output_tokens: 6, temperature: 0 });
    assert.equal(r.object, "response");
    assert.ok(r.output_text.length > 0);
    assert.equal(r.usage!.output_tokens, 6);
    const stream = await client.responses.create({ model: "tiny", input: [{ role: "user", content: "Hello" }], instructions: "Be brief.", max_output_tokens: 5, temperature: 0, stream: true });
    let text = "";
    let last = "";
    for await (const e of stream) {
      if (e.type === "response.output_text.delta") text += e.delta;
      last = e.type;
    }
    assert.ok(text.length > 0);
    assert.ok(last === "response.completed" || last === "response.incomplete");
  });
});

describe("the Vercel AI SDK's default OpenAI provider", () => {
  it("generateText and streamText agree for the same greedy request", async () => {
    const openai = createOpenAI({ baseURL: server.baseURL, apiKey: "none" });
    const g = await generateText({ model: openai("tiny"), prompt: "The countess", maxOutputTokens: 8, temperature: 0 });
    assert.ok(g.text.length > 0);
    assert.equal(g.usage.outputTokens, 8);
    const s = streamText({ model: openai("tiny"), prompt: "The countess", maxOutputTokens: 8, temperature: 0 });
    let text = "";
    for await (const d of s.textStream) text += d;
    assert.equal(text, g.text);
  });
});

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => existsSync(p));

describe("a browser page on another origin", { skip: CHROMIUM ? false : "no Chromium on this machine (CI installs Debian's chromium)" }, () => {
  let page: Server;
  before(async () => {
    page = createServer((_req, res) => res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>client</title>"));
    await new Promise<void>((r) => page.listen(0, "127.0.0.1", r));
  });
  after(() => page.close());

  it("streams a chat completion with fetch and reads the WebSocket", async () => {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    try {
      const context = await browser.newContext();
      const tab = await context.newPage();
      await tab.goto(`http://127.0.0.1:${(page.address() as { port: number }).port}/`);
      const result = await tab.evaluate(async (api: string) => {
        const res = await fetch(`${api}/v1/chat/completions`, {
          method: "POST", headers: { "content-type": "application/json", authorization: "Bearer none" },
          body: JSON.stringify({ messages: [{ role: "user", content: "Hello" }], max_tokens: 5, stream: true, temperature: 0 }),
        });
        const reader = res.body!.getReader();
        let sse = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          sse += new TextDecoder().decode(value);
        }
        const ws = await new Promise<string>((resolve, reject) => {
          const socket = new WebSocket(`${api.replace("http", "ws")}/v1/stream`);
          let text = "";
          socket.onopen = () => socket.send(JSON.stringify({ type: "completion", id: "w", prompt: "Prince", max_tokens: 4 }));
          socket.onmessage = (m) => {
            const msg = JSON.parse(m.data);
            if (msg.type === "chunk") text += msg.chunk.choices[0].text;
            if (msg.type === "done") resolve(text);
            if (msg.type === "error") reject(new Error(JSON.stringify(msg.error)));
          };
          socket.onerror = () => reject(new Error("websocket error"));
        });
        return { status: res.status, sse, ws };
      }, server.origin);
      assert.equal(result.status, 200);
      assert.match(result.sse, /data: \[DONE\]/);
      assert.ok(result.sse.includes('"delta"'));
      assert.ok(result.ws.length > 0);
    } finally {
      await browser.close();
    }
  });
});
