// A small JSON-schema checker for the subset widgets/gen_messages.py writes (type, const,
// enum, properties, required, additionalProperties, items, anyOf/oneOf, $ref to $defs): the
// tests check messages against widgets/messages.schema.json with it, no dependency needed.

import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

type Schema = Record<string, any>;

const here = path.dirname(fileURLToPath(import.meta.url));
export const SCHEMA: Schema = JSON.parse(readFileSync(path.join(here, "../messages.schema.json"), "utf8"));

export function fixture<T = any>(name: string): T {
  return JSON.parse(readFileSync(path.join(here, "fixtures", name), "utf8"));
}

function typeOk(kind: string, value: unknown): boolean {
  switch (kind) {
    case "null":
      return value === null;
    case "string":
      return typeof value === "string";
    case "boolean":
      return typeof value === "boolean";
    case "integer":
      return Number.isInteger(value);
    case "number":
      return typeof value === "number";
    case "array":
      return Array.isArray(value);
    case "object":
      return typeof value === "object" && value !== null && !Array.isArray(value);
    default:
      throw new Error(`schema type ${kind} not supported here`);
  }
}

/** The problems of `value` against `schema` (empty when it is valid). */
export function problems(value: unknown, schema: Schema, where = "$"): string[] {
  if (schema.$ref) {
    const name = String(schema.$ref).replace("#/$defs/", "");
    const def = SCHEMA.$defs[name];
    if (!def) throw new Error(`no $defs/${name}`);
    return problems(value, def, where);
  }
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives) {
    const results = alternatives.map((s: Schema) => problems(value, s, where));
    const fits = results.filter((r: string[]) => r.length === 0).length;
    if (schema.oneOf ? fits === 1 : fits >= 1) return [];
    return [`${where}: fits ${fits} of ${alternatives.length} alternatives (${results.flat().slice(0, 3).join("; ")})`];
  }
  if ("const" in schema && value !== schema.const) return [`${where}: is not ${JSON.stringify(schema.const)}`];
  if (schema.enum && !schema.enum.includes(value)) return [`${where}: ${JSON.stringify(value)} is not one of ${schema.enum}`];
  if (schema.type) {
    const kinds: string[] = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!kinds.some((k) => typeOk(k, value))) return [`${where}: is not ${kinds.join(" or ")}`];
  }
  const out: string[] = [];
  if (Array.isArray(value) && schema.items) {
    value.forEach((item, i) => out.push(...problems(item, schema.items, `${where}[${i}]`)));
  }
  if (typeOk("object", value) && (schema.properties || schema.required || "additionalProperties" in schema)) {
    const obj = value as Record<string, unknown>;
    for (const name of schema.required ?? []) if (!(name in obj)) out.push(`${where}.${name}: missing`);
    for (const [name, v] of Object.entries(obj)) {
      const prop = schema.properties?.[name];
      if (prop) out.push(...problems(v, prop, `${where}.${name}`));
      else if (schema.additionalProperties === false) out.push(`${where}.${name}: not allowed`);
    }
  }
  return out;
}

export function check(value: unknown, definition: "FrontendMessage" | "KernelMessage" | "ChatModel"): string[] {
  return problems(value, { $ref: `#/$defs/${definition}` });
}
