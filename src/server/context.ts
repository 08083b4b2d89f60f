// Everything a route needs to serve a model, built once at start.
import type { GrammarEngine } from "../engine/grammar.js";
import type { LLMEngine } from "../engine/llm_engine.js";
import type { GenerationDefaults } from "../engine/sampling.js";
import type { ChatTemplate } from "../tokenizer/chat_template.js";
import type { TextWork } from "../tokenizer/pool.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import type { Metrics } from "./metrics.js";
import type { ToolParserName } from "./tools.js";

export interface ServingContext {
  engine: LLMEngine;
  tokenizer: Tokenizer | null;
  chatTemplate: ChatTemplate | null;
  /** Tokenizing and chat templates off the event loop for long texts; null without a tokenizer. */
  text: TextWork | null;
  /** Names the model answers to; the first is reported in responses. */
  modelNames: string[];
  /** Folder the model was loaded from (reported as the model's root). */
  modelRoot: string;
  maxModelLen: number;
  generationDefaults: GenerationDefaults;
  metrics: Metrics;
  /** Requests allowed to wait for admission before new ones get 429. */
  maxQueueLen: number;
  logPrompts: boolean;
  /** Set while shutting down: new requests get 503. */
  draining: boolean;
  /** A streaming client that reads nothing for this long loses its request. */
  streamStallMs: number;
  /** xgrammar for this model's vocabulary, made on first use; null without a tokenizer. */
  grammar: (() => Promise<GrammarEngine>) | null;
  /** How tool calls are found in output (--tool-call-parser). */
  toolParser: ToolParserName;
  /** tool_choice "auto" is served (--enable-auto-tool-choice). */
  autoToolChoice: boolean;
}
