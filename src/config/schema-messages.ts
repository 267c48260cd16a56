/**
 * Turns Ajv errors into located messages. Two dialects:
 * - `k8s`: the wording the Kubernetes apiserver / kubectl use for CRD schema errors, so users see
 *   what `kubectl apply` would have told them (`Unsupported value: "X": supported values: ...`).
 * - `friendly`: plain sentences with the fix, for meshext's own bootstrap file.
 */
import type { ErrorObject } from 'ajv';
import { formatPath, quoteValue } from './yaml-source.ts';
import type { PathSeg } from './yaml-source.ts';

export interface SchemaProblem {
  segs: PathSeg[];
  message: string;
}

/** Splits an Ajv instancePath (`/spec/match/0`) into segments, typing array indexes as numbers. */
export function instancePathSegs(instancePath: string, data: unknown): PathSeg[] {
  if (instancePath === '') return [];
  const raw = instancePath.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  const segs: PathSeg[] = [];
  let cur: unknown = data;
  for (const r of raw) {
    if (Array.isArray(cur)) {
      const i = Number(r);
      segs.push(i);
      cur = cur[i];
    } else {
      segs.push(r);
      cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[r] : undefined;
    }
  }
  return segs;
}

function valueAt(data: unknown, segs: readonly PathSeg[]): unknown {
  let cur = data;
  for (const s of segs) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[s];
  }
  return cur;
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

export function schemaProblems(errors: readonly ErrorObject[] | null | undefined, data: unknown, style: 'k8s' | 'friendly'): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  const seen = new Set<string>();
  for (const e of errors ?? []) {
    const segs = instancePathSegs(e.instancePath, data);
    const value = valueAt(data, segs);
    const p = formatPath(segs);
    const problem = style === 'k8s' ? k8sMessage(e, segs, p, value) : friendlyMessage(e, segs, value);
    if (!problem) continue;
    const key = `${formatPath(problem.segs)}\0${problem.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(problem);
  }
  return out;
}

function k8sMessage(e: ErrorObject, segs: PathSeg[], p: string, value: unknown): SchemaProblem | null {
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return { segs: [...segs, String(params.missingProperty)], message: 'Required value' };
    case 'additionalProperties': {
      const child = [...segs, String(params.additionalProperty)];
      return { segs: child, message: `unknown field ${JSON.stringify(formatPath(child))}` };
    }
    case 'type': {
      const t = jsonType(value);
      return { segs, message: `Invalid value: "${t}": ${p} in body must be of type ${String(params.type)}: "${t}"` };
    }
    case 'enum': {
      const allowed = (params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ');
      return { segs, message: `Unsupported value: ${quoteValue(value)}: supported values: ${allowed}` };
    }
    case 'pattern':
      return { segs, message: `Invalid value: ${quoteValue(value)}: ${p} in body should match '${String(params.pattern)}'` };
    case 'minLength':
      return { segs, message: `Invalid value: ${quoteValue(value)}: ${p} in body should be at least ${String(params.limit)} chars long` };
    case 'maxLength':
      return { segs, message: `Too long: may not be more than ${String(params.limit)} bytes` };
    case 'maxItems':
      return { segs, message: `Too many: ${(value as unknown[]).length}: must have at most ${String(params.limit)} items` };
    case 'maxProperties':
      return { segs, message: `Too many: ${Object.keys(value as object).length}: must have at most ${String(params.limit)} items` };
    case 'minimum':
      return { segs, message: `Invalid value: ${quoteValue(value)}: ${p} in body should be greater than or equal to ${String(params.limit)}` };
    case 'maximum':
      return { segs, message: `Invalid value: ${quoteValue(value)}: ${p} in body should be less than or equal to ${String(params.limit)}` };
    default:
      return { segs, message: `Invalid value: ${quoteValue(value)}: ${e.message ?? e.keyword}` };
  }
}

function friendlyMessage(e: ErrorObject, segs: PathSeg[], value: unknown): SchemaProblem | null {
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return { segs: [...segs, String(params.missingProperty)], message: 'is required' };
    case 'additionalProperties': {
      const parent = e.parentSchema as { properties?: Record<string, unknown> } | undefined;
      const allowed = Object.keys(parent?.properties ?? {});
      const hint = allowed.length ? ` (known fields: ${allowed.join(', ')})` : '';
      return { segs: [...segs, String(params.additionalProperty)], message: `unknown field${hint}` };
    }
    case 'type': {
      const want = String(params.type).replace(',', ' or ');
      const quoteHint = want === 'string' && (typeof value === 'number' || typeof value === 'boolean') ? ` (quote it in YAML: "${String(value)}")` : '';
      return { segs, message: `must be ${/^[aeiou]/.test(want) ? 'an' : 'a'} ${want}, got ${jsonType(value)} ${quoteValue(value)}${quoteHint}` };
    }
    case 'enum':
      return { segs, message: `must be one of ${(params.allowedValues as unknown[]).map(String).join(', ')} (got ${quoteValue(value)})` };
    case 'pattern':
      return { segs, message: `${quoteValue(value)} does not match ${String(params.pattern)}` };
    case 'minLength':
      return { segs, message: Number(params.limit) === 1 ? 'must not be empty' : `must be at least ${String(params.limit)} characters` };
    case 'maxLength':
      return { segs, message: `must be at most ${String(params.limit)} characters` };
    case 'minItems':
      return { segs, message: `must have at least ${String(params.limit)} item(s)` };
    case 'maxItems':
      return { segs, message: `must have at most ${String(params.limit)} items` };
    case 'minimum':
      return { segs, message: `must be >= ${String(params.limit)} (got ${quoteValue(value)})` };
    case 'maximum':
      return { segs, message: `must be <= ${String(params.limit)} (got ${quoteValue(value)})` };
    case 'oneOf':
    case 'anyOf':
      // The branch errors carry the detail; this summary adds nothing.
      return null;
    default:
      return { segs, message: e.message ?? e.keyword };
  }
}
