// POST /v1/responses: OpenAI's Responses API over the chat path (stateless: no stored responses).
// Input is text or message items; `instructions` becomes the system message. Streaming sends
// OpenAI's typed events (response.created ... response.completed) as Server-Sent Events.
import { randomUUID } from "node:crypto";

import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

import type { ServingContext } from "../context.js";
import { ApiError, badRequest } from "../errors.js";
import { GenerationRun, type Usage } from "../generation.js";
import { prepareChat } from "../prepare.js";
import { asObject, optBool, optInt, optNumber, optString, type Body } from "../validate.js";

/** Message items -> chat messages; text parts only. */
function inputMessages(input: unknown, instructions: string | undefined): Body[] {
  const messages: Body[] = instructions ? [{ role: "system", content: instructions }] : [];
  if (typeof input === "string") return [...messages, { role: "user", content: input }];
  if (!Array.isArray(input) || input.length === 0) throw badRequest("input must be a string or a non-empty array of message items", "input");
  input.forEach((raw, i) => {
    const item = asObject(raw, `input[${i}]`);
    if (item.type !== undefined && item.type !== "message") {
      throw badRequest(`input[${i}]: items of type ${JSON.stringify(item.type)} are not supported (only messages)`, "input", "unsupported_parameter");
    }
    const role = item.role;
    if (role !== "user" && role !== "assistant" && role !== "system" && role !== "developer") throw badRequest(`input[${i}].role must be user, assistant, system or developer`, "input");
    const content = item.content;
    let text: string;
    if (typeof content === "string") text = content;
    else if (Array.isArray(content)) {
      text = content.map((part, j) => {
        const p = asObject(part, `input[${i}].content[${j}]`);
        if ((p.type === "input_text" || p.type === "output_text" || p.type === "text") && typeof p.text === "string") return p.text;
        throw badRequest(`input[${i}].content[${j}]: only text parts are supported, got type ${JSON.stringify(p.type)}`, "input", "unsupported_parameter");
      }).join("");
    } else throw badRequest(`input[${i}].content must be a string or an array of text parts`, "input");
    messages.push({ role, content: text });
  });
  return messages;
}

/** The Responses body as a chat body; fields that would change the output and are not implemented get a 400. */
function chatBody(body: Body): Body {
  for (const key of ["previous_response_id", "conversation", "prompt", "background"]) {
    if (body[key] !== undefined && body[key] !== null && body[key] !== false) throw badRequest(`${key} is not supported: this server stores no responses`, key, "unsupported_parameter");
  }
  for (const key of ["reasoning", "top_logprobs"]) {
    if (body[key] !== undefined && body[key] !== null) throw badRequest(`${key} is not supported by this server`, key, "unsupported_parameter");
  }
  if (Array.isArray(body.include) && body.include.length > 0) throw badRequest("include is not supported by this server", "include", "unsupported_parameter");
  if (Array.isArray(body.tools) && body.tools.length > 0) throw badRequest("tools are not supported on /v1/responses yet: use /v1/chat/completions", "tools", "unsupported_parameter");
  const truncation = optString(body, "truncation");
  if (truncation !== undefined && truncation !== "disabled") throw badRequest('truncation must be "disabled"', "truncation", "unsupported_parameter");
  const format = body.text === undefined || body.text === null ? undefined : asObject(asObject(body.text, "text").format ?? { type: "text" }, "text.format");
  // text.format is response_format with the schema's fields inline.
  let responseFormat: Body | undefined;
  if (format?.type === "json_schema") responseFormat = { type: "json_schema", json_schema: { name: format.name, schema: format.schema, strict: format.strict } };
  else if (format?.type === "json_object") responseFormat = { type: "json_object" };
  else if (format && format.type !== "text") throw badRequest(`text.format must be "text", "json_object" or "json_schema", got ${JSON.stringify(format.type)}`, "text.format");
  optBool(body, "store");
  optBool(body, "parallel_tool_calls");
  return {
    model: body.model, messages: inputMessages(body.input, optString(body, "instructions")),
    max_tokens: optInt(body, "max_output_tokens", 1), temperature: optNumber(body, "temperature", 0), top_p: optNumber(body, "top_p"),
    user: body.user, ...(responseFormat ? { response_format: responseFormat } : {}),
  };
}

interface ResponseState {
  id: string;
  itemId: string;
  createdAt: number;
  model: string;
  body: Body;
}

function responseObject(s: ResponseState, status: "in_progress" | "completed" | "incomplete", text: string | null, usage: Usage | null, incomplete: string | null): Body {
  return {
    id: s.id, object: "response", created_at: s.createdAt, status, model: s.model,
    output: text === null ? [] : [{ id: s.itemId, type: "message", status: status === "in_progress" ? "in_progress" : "completed", role: "assistant", content: [{ type: "output_text", text, annotations: [] }] }],
    output_text: text ?? "",
    usage: usage && {
      input_tokens: usage.prompt_tokens, input_tokens_details: { cached_tokens: usage.prompt_tokens_details.cached_tokens },
      output_tokens: usage.completion_tokens, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: usage.total_tokens,
    },
    incomplete_details: incomplete ? { reason: incomplete } : null,
    error: null, instructions: s.body.instructions ?? null, max_output_tokens: s.body.max_output_tokens ?? null,
    temperature: s.body.temperature ?? null, top_p: s.body.top_p ?? null, metadata: s.body.metadata ?? {},
    parallel_tool_calls: true, previous_response_id: null, store: false, text: { format: { type: "text" } }, tool_choice: "auto", tools: [], truncation: "disabled",
  };
}

async function collect(run: GenerationRun): Promise<{ text: string; finish: string | undefined }> {
  let text = "";
  let finish: string | undefined;
  for await (const e of run) {
    text += e.text;
    if (e.finishReason) finish = e.finishReason;
  }
  return { text, finish };
}

async function stream(request: FastifyRequest, reply: FastifyReply, run: GenerationRun, s: ResponseState): Promise<void> {
  const res = reply.raw;
  reply.hijack();
  res.writeHead(200, { ...(reply.getHeaders() as Record<string, string>), "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" });
  let gone = false;
  res.on("close", () => {
    if (!res.writableEnded) {
      gone = true;
      run.abort();
    }
  });
  let seq = 0;
  const send = (type: string, data: Body) => {
    if (!gone) res.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`);
  };
  const where = { item_id: s.itemId, output_index: 0, content_index: 0 };
  try {
    send("response.created", { response: responseObject(s, "in_progress", null, null, null) });
    send("response.in_progress", { response: responseObject(s, "in_progress", null, null, null) });
    send("response.output_item.added", { output_index: 0, item: { id: s.itemId, type: "message", status: "in_progress", role: "assistant", content: [] } });
    send("response.content_part.added", { ...where, part: { type: "output_text", text: "", annotations: [] } });
    let text = "";
    let finish: string | undefined;
    for await (const e of run) {
      if (gone) break;
      if (e.text) {
        text += e.text;
        send("response.output_text.delta", { ...where, delta: e.text, logprobs: [] });
      }
      if (e.finishReason) finish = e.finishReason;
    }
    const summary = await run.summary;
    const part = { type: "output_text", text, annotations: [] };
    send("response.output_text.done", { ...where, text, logprobs: [] });
    send("response.content_part.done", { ...where, part });
    send("response.output_item.done", { output_index: 0, item: { id: s.itemId, type: "message", status: "completed", role: "assistant", content: [part] } });
    const incomplete = finish === "length" ? "max_output_tokens" : null;
    send(incomplete ? "response.incomplete" : "response.completed", { response: responseObject(s, incomplete ? "incomplete" : "completed", text, summary.usage, incomplete) });
  } catch (err) {
    const e = ApiError.from(err);
    send("error", { code: e.code ?? e.type, message: e.message, param: e.param });
  } finally {
    res.end();
  }
}

export function registerResponsesRoute(app: FastifyInstance, ctx: ServingContext): void {
  app.post("/v1/responses", async (request, reply) => {
    const body = asObject(request.body);
    const prepared = await prepareChat(ctx, chatBody(body));
    const wantsStream = optBool(body, "stream") ?? false;
    const run = await GenerationRun.start(ctx, { ...prepared, stream: wantsStream, includeUsage: false, continuousUsage: false }, request.id);
    const s: ResponseState = { id: `resp_${randomUUID().replace(/-/g, "")}`, itemId: `msg_${randomUUID().replace(/-/g, "")}`, createdAt: Math.floor(Date.now() / 1000), model: prepared.model, body };
    if (wantsStream) return stream(request, reply, run, s);
    const onClose = () => {
      if (!reply.raw.writableEnded) run.abort();
    };
    reply.raw.on("close", onClose);
    try {
      const { text, finish } = await collect(run);
      const summary = await run.summary;
      const incomplete = finish === "length" ? "max_output_tokens" : null;
      return responseObject(s, incomplete ? "incomplete" : "completed", text, summary.usage, incomplete);
    } finally {
      reply.raw.off("close", onClose);
    }
  });
}
