// Reading request bodies: each reader names the parameter it rejects.
import { badRequest } from "./errors.js";

export type Body = Record<string, unknown>;

export function asObject(value: unknown, what = "request body", param: string | null = null): Body {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw badRequest(`${what} must be a JSON object`, param);
  return value as Body;
}

function typeName(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

export function optNumber(body: Body, key: string, min?: number, max?: number): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw badRequest(`${key} must be a number, not ${typeName(v)}`, key);
  if ((min !== undefined && v < min) || (max !== undefined && v > max)) {
    throw badRequest(`${key} must be ${min !== undefined && max !== undefined ? `in [${min}, ${max}]` : min !== undefined ? `>= ${min}` : `<= ${max}`}, got ${v}`, key);
  }
  return v;
}

export function optInt(body: Body, key: string, min?: number, max?: number): number | undefined {
  const v = optNumber(body, key, min, max);
  if (v !== undefined && !Number.isInteger(v)) throw badRequest(`${key} must be an integer, got ${v}`, key);
  return v;
}

export function optBool(body: Body, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw badRequest(`${key} must be a boolean, not ${typeName(v)}`, key);
  return v;
}

export function optString(body: Body, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw badRequest(`${key} must be a string, not ${typeName(v)}`, key);
  return v;
}

/** stop: a string or an array of strings. */
export function optStop(body: Body): string[] {
  const v = body.stop;
  if (v === undefined || v === null) return [];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.some((s) => typeof s !== "string")) throw badRequest("stop must be a string or an array of strings", "stop");
  if (list.some((s) => s.length === 0)) throw badRequest("stop strings must not be empty", "stop");
  return list;
}

export function optIntArray(body: Body, key: string): number[] {
  const v = body[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((x) => !Number.isInteger(x) || x < 0)) throw badRequest(`${key} must be an array of token ids`, key);
  return v as number[];
}

/** Rejects parameters we do not implement, when set to anything but their no-op value. */
export function rejectUnsupported(body: Body, keys: Record<string, (v: unknown) => boolean>): void {
  for (const [key, isNoop] of Object.entries(keys)) {
    const v = body[key];
    if (v !== undefined && v !== null && !isNoop(v)) throw badRequest(`${key} is not supported by this server`, key, "unsupported_parameter");
  }
}
