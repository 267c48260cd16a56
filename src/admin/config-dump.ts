/**
 * `/config_dump` query handling in the simple form of Envoy's: `?resource=` picks one repeated
 * field out of every config section, `?mask=` keeps only the listed field paths, `?name_regex=`
 * keeps the resources whose name matches.
 *
 * The source may return Envoy's shape (`{configs: [{'@type': ..., <fields>}, ...]}`) or a plain
 * object; a plain object is treated as a single config section.
 */

export class ConfigDumpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function sections(dump: unknown): Json[] {
  if (isObject(dump) && Array.isArray(dump.configs)) return dump.configs.filter(isObject);
  if (isObject(dump)) return [dump];
  return [];
}

/** Keeps only the given dotted paths of `obj` (protobuf FieldMask semantics, over JSON). Arrays are masked element-wise. */
export function applyMask(obj: unknown, paths: string[][]): unknown {
  if (Array.isArray(obj)) return obj.map((o) => applyMask(o, paths));
  if (!isObject(obj)) return obj;
  const out: Json = {};
  // Keep `@type` so a masked section still says what it is, as Envoy does.
  if ('@type' in obj) out['@type'] = obj['@type'];
  const byHead = new Map<string, string[][]>();
  for (const p of paths) {
    const [head, ...rest] = p;
    if (head === undefined) continue;
    let list = byHead.get(head);
    if (!list) byHead.set(head, (list = []));
    list.push(rest);
  }
  for (const [head, rests] of byHead) {
    if (!(head in obj)) continue;
    // A bare path (`a`) keeps the whole field even when `a.b` is also listed.
    out[head] = rests.some((r) => r.length === 0) ? obj[head] : applyMask(obj[head], rests);
  }
  return out;
}

/** A resource's name for `?name_regex=`: `name`, or the name inside an Envoy wrapper field. */
function resourceName(r: unknown): string | undefined {
  if (!isObject(r)) return undefined;
  if (typeof r.name === 'string') return r.name;
  for (const v of Object.values(r)) if (isObject(v) && typeof v.name === 'string') return v.name;
  return undefined;
}

export interface ConfigDumpQuery {
  resource?: string;
  mask?: string;
  nameRegex?: RegExp;
}

export function queryConfigDump(dump: unknown, q: ConfigDumpQuery): unknown {
  const paths = q.mask ? q.mask.split(',').map((p) => p.trim()).filter(Boolean).map((p) => p.split('.')) : undefined;
  if (!q.resource) {
    let configs: unknown[] = sections(dump);
    if (q.nameRegex) {
      const re = q.nameRegex;
      // Without `resource`, name_regex filters each section's repeated fields.
      configs = (configs as Json[]).map((c) => {
        const out: Json = {};
        for (const [k, v] of Object.entries(c)) out[k] = Array.isArray(v) ? v.filter((r) => matches(re, r)) : v;
        return out;
      });
    }
    if (paths) configs = configs.map((c) => applyMask(c, paths));
    return { configs };
  }
  const found: unknown[] = [];
  let present = false;
  for (const s of sections(dump)) {
    const field = s[q.resource];
    if (field === undefined) continue;
    present = true;
    const items = Array.isArray(field) ? field : [field];
    for (const item of items) {
      if (q.nameRegex && !matches(q.nameRegex, item)) continue;
      found.push(paths ? applyMask(item, paths) : item);
    }
  }
  if (!present) throw new ConfigDumpError(404, `no config section has a field named '${q.resource}'`);
  return { configs: found };
}

function matches(re: RegExp, r: unknown): boolean {
  const n = resourceName(r);
  re.lastIndex = 0;
  return n !== undefined && re.test(n);
}
