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
 * turns, then "Assistant:" to prompt the reply.
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{{ bos_token }}" +
  "{% for message in messages %}" +
  "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n" +
  "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n" +
  "{% elif message['role'] == 'assistant' %}Assistant: {{ message['content'] }}\n" +
  "{% else %}{{ message['role'] }}: {{ message['content'] }}\n{% endif %}" +
  "{% endfor %}" +
  "{% if add_generation_prompt %}Assistant:{% endif %}";

export interface RenderOptions {
  bosToken?: string;
  eosToken?: string;
  addGenerationPrompt?: boolean;
  tools?: unknown[];
  extra?: Record<string, unknown>;
}

/** A compiled chat template. */
export class ChatTemplate {
  private readonly template: Template;

  constructor(readonly source: string) {
    this.template = new Template(source);
  }

  /** Renders messages to the prompt text (special tokens appear as text, to be encoded without adding more). */
  render(messages: ChatMessage[], options: RenderOptions = {}): string {
    return this.template.render({
      messages,
      bos_token: options.bosToken ?? "",
      eos_token: options.eosToken ?? "",
      add_generation_prompt: options.addGenerationPrompt ?? true,
      ...(options.tools ? { tools: options.tools } : {}),
      ...(options.extra ?? {}),
    });
  }
}
