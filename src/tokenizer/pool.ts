// Tokenization, chat templates and detokenization that never stall the event loop: short texts
// on the calling thread (a few milliseconds at most), long ones on a pool of worker threads, each
// with its own copy of the tokenizer. A bounded queue: past it, callers get TextWorkBusy.
import { Worker } from "node:worker_threads";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { TemplateCache, type ChatMessage, type ChatTemplate, type RenderOptions } from "./chat_template.js";
import type { Tokenizer } from "./tokenizer.js";
import type { WorkerReply, WorkerRequest } from "./worker.js";

/** Texts up to this many UTF-16 units are handled inline (tokenizing 16 K characters takes ~2 ms). */
export const INLINE_CHARS = 16 * 1024;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** Too many long texts waiting for a worker. */
export class TextWorkBusy extends Error {}

interface Pending {
  resolve: (reply: WorkerReply) => void;
  reject: (err: Error) => void;
}

class PoolWorker {
  readonly worker: Worker;
  readonly pending = new Map<number, Pending>();

  constructor(dir: string, template: string | null, onExit: (w: PoolWorker, err: Error) => void) {
    const file = path.join(path.dirname(fileURLToPath(import.meta.url)), "worker.js");
    this.worker = new Worker(file, { workerData: { dir, template } });
    this.worker.unref();
    this.worker.on("message", (reply: WorkerReply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      p.resolve(reply);
    });
    const fail = (err: Error) => {
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      onExit(this, err);
    };
    this.worker.on("error", fail);
    this.worker.on("exit", (code) => fail(new Error(`tokenizer worker exited with code ${code}`)));
  }
}

export interface TextWorkOptions {
  /** The model folder (its tokenizer.json is loaded in each worker). */
  dir: string;
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate | null;
  /** Worker threads for long texts (started on first use). */
  workers: number;
  /** Long texts waiting or in work at most. */
  maxQueued?: number;
}

/** The serving side's text work: encode, chat prompts, decode. */
export class TextWork {
  private readonly workers: PoolWorker[] = [];
  private nextId = 1;
  private next = 0;
  private inFlight = 0;
  private readonly maxQueued: number;
  private readonly requestTemplates = new TemplateCache();

  constructor(private readonly o: TextWorkOptions) {
    this.maxQueued = o.maxQueued ?? 64;
  }

  get tokenizer(): Tokenizer {
    return this.o.tokenizer;
  }

  async encode(text: string, addSpecialTokens = true): Promise<number[]> {
    if (text.length <= INLINE_CHARS || this.o.workers === 0) return this.o.tokenizer.encode(text, addSpecialTokens);
    const reply = await this.send({ op: "encode", text, addSpecialTokens });
    return [...reply.ids!];
  }

  /**
   * Renders messages through the chat template (the model's, or `template`: a request's own) and
   * encodes the result (special tokens added only with addSpecialTokens: the template writes them).
   */
  async chat(messages: ChatMessage[], options: RenderOptions, template: string | null = null, addSpecialTokens = false): Promise<{ ids: number[]; text: string }> {
    const t = template !== null ? this.requestTemplates.get(template) : this.o.chatTemplate;
    if (!t) throw new Error("no chat template");
    const size = messages.reduce((n, m) => n + (m.content?.length ?? 0), 0) + JSON.stringify(options.tools ?? []).length;
    if (size <= INLINE_CHARS || this.o.workers === 0) {
      const text = t.render(messages, options);
      return { ids: this.o.tokenizer.encode(text, addSpecialTokens), text };
    }
    const reply = await this.send({ op: "chat", messages, options, template, addSpecialTokens });
    return { ids: [...reply.ids!], text: reply.text! };
  }

  async decode(ids: readonly number[], skipSpecialTokens = true): Promise<string> {
    if (ids.length <= INLINE_CHARS / 4 || this.o.workers === 0) return this.o.tokenizer.decode(ids, skipSpecialTokens);
    const reply = await this.send({ op: "decode", ids: Int32Array.from(ids), skipSpecialTokens });
    return reply.text!;
  }

  /** Stops the workers. */
  async close(): Promise<void> {
    await Promise.all(this.workers.splice(0).map((w) => w.worker.terminate()));
  }

  private send(request: DistributiveOmit<WorkerRequest, "id">): Promise<WorkerReply> {
    if (this.inFlight >= this.maxQueued) throw new TextWorkBusy(`${this.inFlight} long texts are being tokenized already; retry shortly`);
    while (this.workers.length < this.o.workers) {
      this.workers.push(new PoolWorker(this.o.dir, this.o.chatTemplate?.source ?? null, (w) => {
        const i = this.workers.indexOf(w);
        if (i >= 0) this.workers.splice(i, 1);
      }));
    }
    const w = this.workers[this.next++ % this.workers.length]!;
    const id = this.nextId++;
    this.inFlight++;
    return new Promise<WorkerReply>((resolve, reject) => {
      w.pending.set(id, { resolve, reject });
      w.worker.postMessage({ ...request, id } as WorkerRequest);
    }).then(
      (reply) => {
        this.inFlight--;
        if (reply.error !== undefined) throw new Error(reply.error);
        return reply;
      },
      (err: Error) => {
        this.inFlight--;
        throw err;
      },
    );
  }
}
