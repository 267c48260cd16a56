/**
 * YAML helpers shared by the bootstrap and extension loaders: parse with line tracking, turn a
 * field path into the line that holds it, and format paths the way Kubernetes does
 * (`spec.match[0].ports[1].number`, `metadata.labels[app.kubernetes.io/name]`).
 */
import { isMap, isPair, isScalar, isSeq, LineCounter, parseAllDocuments, parseDocument } from 'yaml';
import type { Document, Node as YamlNode, Tags } from 'yaml';

export type PathSeg = string | number;

const plainKey = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

/** `['spec', 'match', 0, 'ports']` → `spec.match[0].ports`; odd keys go in brackets. */
export function formatPath(segs: readonly PathSeg[]): string {
  let out = '';
  for (const s of segs) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (plainKey.test(s)) out += out === '' ? s : `.${s}`;
    else out += `[${s}]`;
  }
  return out;
}

/** Maps field paths of one YAML document to 1-based line numbers. */
export class YamlLocator {
  readonly #root: unknown;
  readonly #lines: LineCounter;
  /** Line used when nothing better is known (the document's first line). */
  readonly startLine: number;

  constructor(root: unknown, lines: LineCounter, startLine: number) {
    this.#root = root;
    this.#lines = lines;
    this.startLine = startLine;
  }

  #line(offset: number | undefined): number {
    if (offset === undefined) return this.startLine;
    return this.#lines.linePos(offset).line;
  }

  /**
   * The line of the deepest node along `segs` that exists. For a missing field this is the line of
   * its parent, which is where the user has to add it.
   */
  lineOf(segs: readonly PathSeg[]): number {
    let node: unknown = this.#root;
    let line = isNodeWithRange(node) ? this.#line(node.range?.[0]) : this.startLine;
    for (const seg of segs) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isPair(p) && keyOf(p.key) === String(seg));
        if (!pair) break;
        const k = pair.key as YamlNode | null;
        line = this.#line(k?.range?.[0] ?? (pair.value as YamlNode | null)?.range?.[0]);
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = node.items[seg] as YamlNode | undefined;
        if (!item) break;
        line = this.#line(item.range?.[0]);
        node = item;
      } else {
        break;
      }
    }
    return line;
  }

  /** A locator for a sub-tree (used for `kind: List` items). */
  child(segs: readonly PathSeg[]): YamlLocator {
    let node: unknown = this.#root;
    for (const seg of segs) {
      if (isMap(node)) node = node.items.find((p) => isPair(p) && keyOf(p.key) === String(seg))?.value;
      else if (isSeq(node) && typeof seg === 'number') node = node.items[seg];
      else { node = undefined; break; }
    }
    return new YamlLocator(node, this.#lines, this.lineOf(segs));
  }
}

/** A locator for objects that did not come from YAML: every path is line 0. */
export class NullLocator extends YamlLocator {
  constructor() {
    super(undefined, new LineCounter(), 0);
  }
  override lineOf(): number {
    return 0;
  }
  override child(): YamlLocator {
    return this;
  }
}

function isNodeWithRange(n: unknown): n is { range?: [number, number, number] } {
  return typeof n === 'object' && n !== null && 'range' in n;
}

function keyOf(k: unknown): string | undefined {
  if (isScalar(k)) return String(k.value);
  if (typeof k === 'string') return k;
  return undefined;
}

export interface ParsedYamlDoc {
  /** Plain JS value of the document (undefined for an empty document). */
  value: unknown;
  locator: YamlLocator;
  /** Syntax errors in this document, with their lines. */
  errors: { line: number; message: string }[];
}

function docErrors(doc: Document, lines: LineCounter): { line: number; message: string }[] {
  return doc.errors.map((e) => ({
    line: e.linePos?.[0]?.line ?? lines.linePos(e.pos[0]).line,
    // The yaml library appends a code frame after the first line; keep only the sentence.
    message: e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, ''),
  }));
}

function toValue(doc: Document): unknown {
  if (doc.contents === null) return undefined;
  // Tolerate errors here: the caller reports them and skips the document.
  return doc.toJS({ maxAliasCount: 1000 });
}

/**
 * Parses every `---` document of a YAML (or JSON) stream, keeping line numbers. `version: '1.1'`
 * mimics kubectl (sigs.k8s.io/yaml, go-yaml v2): `yes`/`on`/`y` are booleans there too.
 */
export function parseYamlStream(text: string, opts: { version?: '1.1' | '1.2' } = {}): ParsedYamlDoc[] {
  const lines = new LineCounter();
  const version = opts.version ?? '1.2';
  const docs = parseAllDocuments(text, {
    lineCounter: lines,
    prettyErrors: true,
    uniqueKeys: true,
    version,
    // kubectl turns timestamps back into strings, and go-yaml has no base-60 numbers: keep both as text.
    ...(version === '1.1' ? { customTags: (tags: Tags) => tags.filter((t) => !(typeof t === 'object' && (t.tag === 'tag:yaml.org,2002:timestamp' || ('format' in t && t.format === 'TIME')))) } : {}),
  });
  const list = Array.isArray(docs) ? docs : [];
  return list.map((doc) => {
    const errors = docErrors(doc, lines);
    const startLine = lines.linePos(doc.contents?.range?.[0] ?? doc.range[0]).line;
    let value: unknown;
    if (errors.length === 0) {
      try {
        value = toValue(doc);
      } catch (err) {
        errors.push({ line: startLine, message: (err as Error).message });
      }
    }
    return { value, locator: new YamlLocator(doc.contents, lines, startLine), errors };
  });
}

/** Parses a single YAML document. */
export function parseYamlDocument(text: string): ParsedYamlDoc {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  const errors = docErrors(doc, lines);
  const startLine = doc.contents?.range ? lines.linePos(doc.contents.range[0]).line : 1;
  let value: unknown;
  if (errors.length === 0) {
    try {
      value = toValue(doc);
    } catch (err) {
      errors.push({ line: startLine, message: (err as Error).message });
    }
  }
  return { value, locator: new YamlLocator(doc.contents, lines, startLine), errors };
}

/** Renders a value the way Kubernetes error messages quote it. */
export function quoteValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (v === null) return 'null';
  if (Array.isArray(v)) return '"array"';
  return '"object"';
}
