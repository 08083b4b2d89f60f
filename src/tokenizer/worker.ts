// A tokenizer worker thread: the model's tokenizer and chat template, for texts long enough to
// stall the event loop (see pool.ts). One request at a time; answers carry the request's id.
import { parentPort, workerData } from "node:worker_threads";

import { ChatTemplate, TemplateCache, type ChatMessage, type RenderOptions } from "./chat_template.js";
import { Tokenizer } from "./tokenizer.js";

export type WorkerRequest =
  | { id: number; op: "encode"; text: string; addSpecialTokens: boolean }
  | { id: number; op: "chat"; messages: ChatMessage[]; options: RenderOptions; template: string | null; addSpecialTokens: boolean }
  | { id: number; op: "decode"; ids: Int32Array; skipSpecialTokens: boolean };

export type WorkerReply = { id: number; ids?: Int32Array; text?: string; error?: string };

const { dir, template } = workerData as { dir: string; template: string | null };
const tokenizer = Tokenizer.load(dir);
const chat = template === null ? null : new ChatTemplate(template);
const requestTemplates = new TemplateCache();

parentPort!.on("message", (r: WorkerRequest) => {
  try {
    if (r.op === "encode") {
      const ids = Int32Array.from(tokenizer.encode(r.text, r.addSpecialTokens));
      parentPort!.postMessage({ id: r.id, ids } satisfies WorkerReply, [ids.buffer]);
    } else if (r.op === "chat") {
      const t = r.template !== null ? requestTemplates.get(r.template) : chat;
      if (!t) throw new Error("no chat template");
      const text = t.render(r.messages, r.options);
      const ids = Int32Array.from(tokenizer.encode(text, r.addSpecialTokens));
      parentPort!.postMessage({ id: r.id, ids, text } satisfies WorkerReply, [ids.buffer]);
    } else {
      parentPort!.postMessage({ id: r.id, text: tokenizer.decode([...r.ids], r.skipSpecialTokens) } satisfies WorkerReply);
    }
  } catch (err) {
    parentPort!.postMessage({ id: r.id, error: err instanceof Error ? err.message : String(err) } satisfies WorkerReply);
  }
});
