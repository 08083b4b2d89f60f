// Chat templates (Jinja, as in tokenizer_config.json) through @huggingface/jinja.
import { Template } from "@huggingface/jinja";

/** A chat message as the OpenAI API carries it (content already flattened to text). */
export interface ChatMessage {
  role: string;
  content: string | null;
  name?: string;
  tool_calls?: unknown[];
  tool_call_id?: string;
}

/**
 * The template for models without one (base models, like the bundled model): plain "Role: text"
 * turns, then "Assistant:" to prompt the reply. Tools are listed up front and calls written in the
 * hermes format (<tool_call>{"name": ..., "arguments": ...}</tool_call>), which the default
 * --tool-call-parser reads back; tool results go in <tool_response> blocks.
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{{ bos_token }}" +
  "{% if tools %}# Tools\n\nYou may call one or more functions. Their signatures, within <tools></tools>:\n<tools>\n" +
  "{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}</tools>\n\n" +
  "For each call, write a JSON object with the function's name and arguments within <tool_call></tool_call>:\n" +
  "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>\n\n{% endif %}" +
  "{% for message in messages %}" +
  "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n" +
  "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n" +
  "{% elif message['role'] == 'assistant' %}Assistant:{% if message['content'] %} {{ message['content'] }}{% endif %}" +
  "{% if message['tool_calls'] %}{% for call in message['tool_calls'] %}\n<tool_call>\n" +
  "{\"name\": {{ call['function']['name'] | tojson }}, \"arguments\": {{ call['function']['arguments'] | tojson }}}\n</tool_call>{% endfor %}{% endif %}{{ '\\n' }}" +
  "{% elif message['role'] == 'tool' %}Tool: <tool_response>\n{{ message['content'] }}\n</tool_response>\n" +
  "{% else %}{{ message['role'] }}: {{ message['content'] }}\n{% endif %}" +
  "{% endfor %}" +
  "{% if add_generation_prompt %}Assistant:{% endif %}";

export interface RenderOptions {
  bosToken?: string;
  eosToken?: string;
  addGenerationPrompt?: boolean;
  tools?: unknown[];
  /** chat_template_kwargs: more variables for the template. */
  extra?: Record<string, unknown>;
  /** The last message is the start of the reply: the prompt ends where its content ends (no end-of-turn). */
  continueFinalMessage?: boolean;
}

/** A compiled chat template. */
export class ChatTemplate {
  private readonly template: Template;

  constructor(readonly source: string) {
    this.template = new Template(source);
  }

  /** Renders messages to the prompt text (special tokens appear as text, to be encoded without adding more). */
  render(messages: ChatMessage[], options: RenderOptions = {}): string {
    const text = this.template.render({
      ...(options.extra ?? {}),
      messages,
      bos_token: options.bosToken ?? "",
      eos_token: options.eosToken ?? "",
      add_generation_prompt: options.continueFinalMessage ? false : (options.addGenerationPrompt ?? true),
      ...(options.tools ? { tools: options.tools } : {}),
    });
    if (!options.continueFinalMessage) return text;
    // As Hugging Face does: cut after the final message's content, dropping what closes the turn.
    const last = (messages[messages.length - 1]?.content ?? "").trim();
    const at = last === "" ? -1 : text.lastIndexOf(last);
    if (at < 0) throw new Error("continue_final_message: the final message's content is not in the rendered prompt");
    return text.slice(0, at + last.length);
  }
}

/** Templates requests bring (vLLM's chat_template field), compiled once per source; the last 16 kept. */
export class TemplateCache {
  private readonly map = new Map<string, ChatTemplate>();

  get(source: string): ChatTemplate {
    let t = this.map.get(source);
    if (t) this.map.delete(source);
    else t = new ChatTemplate(source);
    this.map.set(source, t);
    if (this.map.size > 16) this.map.delete(this.map.keys().next().value as string);
    return t;
  }
}
