// Loads a model folder: the native engine, its tokenizer and chat template, its info.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

import { native } from "../native/binding.js";
import type { LoadOptions, NativeEngine } from "../native/types.js";
import { ChatTemplate, DEFAULT_CHAT_TEMPLATE } from "../tokenizer/chat_template.js";
import { Tokenizer } from "../tokenizer/tokenizer.js";
import { readModelInfo, type ModelInfo } from "./model_info.js";

export interface LoadedModel {
  engine: NativeEngine;
  tokenizer: Tokenizer | null;
  chatTemplate: ChatTemplate | null;
  /** True when the template is the built-in default (the model has none). */
  usesDefaultChatTemplate: boolean;
  info: ModelInfo;
}

export interface LoadModelOptions extends Omit<LoadOptions, "modelDir"> {
  /** A Jinja file that replaces the model's chat template. */
  chatTemplateFile?: string;
}

export async function loadModel(dir: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  if (!existsSync(dir)) throw new Error(`model folder not found: ${dir}`);
  const info = readModelInfo(dir);
  const { chatTemplateFile, ...loadOptions } = options;
  const engine = await native().loadEngine({ ...loadOptions, modelDir: dir });
  const tokenizer = info.hasTokenizer ? Tokenizer.load(dir) : null;
  if (tokenizer?.eosTokenId !== undefined && !info.eosTokenIds.includes(tokenizer.eosTokenId)) info.eosTokenIds.push(tokenizer.eosTokenId);
  let source = tokenizer?.chatTemplate;
  if (chatTemplateFile) {
    if (!existsSync(chatTemplateFile)) throw new Error(`chat template file not found: ${chatTemplateFile}`);
    source = readFileSync(chatTemplateFile, "utf8");
  }
  const usesDefault = tokenizer !== null && source === undefined;
  const chatTemplate = tokenizer ? new ChatTemplate(source ?? DEFAULT_CHAT_TEMPLATE) : null;
  return { engine, tokenizer, chatTemplate, usesDefaultChatTemplate: usesDefault, info: { ...info, dir: path.resolve(dir) } };
}
