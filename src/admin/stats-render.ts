/**
 * Renders a merged StatsSnapshot the ways Envoy's admin does: flat `name: value` text, the JSON of
 * `/stats?format=json`, and the Prometheus text exposition of `/stats/prometheus`.
 *
 * Naming conventions (see docs/admin.md):
 * - Envoy-style stats are stored under their full dotted name (`cluster.<name>.upstream_rq_200`) and
 *   shown as-is by `/stats`. For Prometheus, the tag-extraction rules Istio's bootstrap installs
 *   pull the variable parts out as labels (`envoy_cluster_upstream_rq{cluster_name=..,response_code="200"}`).
 * - A stat stored with explicit tags is shown by `/stats` with its tags joined into the name
 *   (`name.tag.value...`, as Envoy's tag joiner builds a tagged stat's flat name), and rendered to
 *   Prometheus under its own name with the tags as labels.
 * - `istio_*` stats and the custom namespaces `wasmcustom.` / `istiocustom.` get no `envoy_` prefix
 *   in Prometheus (the namespace prefix is dropped), as Envoy does for custom stat namespaces.
 *
 * The Prometheus renderer is our own rather than prom-client's registry: scrapes render merged
 * snapshots from several workers, and prom-client histograms cannot be loaded from bucket counts
 * without replaying observations. The output follows the same text format (0.0.4).
 */
import type { StatEntry, StatsSnapshot } from '../observability/stats.ts';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Quantiles Envoy reports for histograms in `/stats` (percent). */
export const SUPPORTED_QUANTILES = [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100];

type HistogramEntry = Extract<StatEntry, { kind: 'histogram' }>;

export interface StatsQuery {
  /** Regex tested (search semantics) against the flat name. */
  filter?: RegExp;
  /** Only stats that were written: non-zero counters/gauges, histograms with samples. */
  usedOnly?: boolean;
  /** Envoy's `?type=`: Counters, Gauges, Histograms (TextReadouts has none here). */
  type?: 'Counters' | 'Gauges' | 'Histograms' | 'TextReadouts' | 'All';
}

/**
 * The flat `/stats` name: the name, then each tag as `.key.value`. Control characters (which a tag
 * value taken from a request could carry) become `_` so one stat stays one line.
 */
export function flatName(e: StatEntry): string {
  let n = e.name;
  let tagged = false;
  for (const k in e.tags) {
    n += `.${k}.${e.tags[k]}`;
    tagged = true;
  }
  // eslint-disable-next-line no-control-regex
  return tagged ? n.replace(/[\u0000-\u001f\u007f]/g, '_') : n;
}

function isUsed(e: StatEntry): boolean {
  return e.kind === 'histogram' ? e.count > 0 : e.value !== 0;
}

function typeMatches(e: StatEntry, type: StatsQuery['type']): boolean {
  switch (type) {
    case undefined:
    case 'All':
      return true;
    case 'Counters':
      return e.kind === 'counter';
    case 'Gauges':
      return e.kind === 'gauge';
    case 'Histograms':
      return e.kind === 'histogram';
    default:
      return false;
  }
}

interface Selected {
  scalars: { name: string; e: StatEntry }[];
  histograms: { name: string; e: HistogramEntry }[];
}

function select(snapshot: StatsSnapshot, q: StatsQuery): Selected {
  const scalars: Selected['scalars'] = [];
  const histograms: Selected['histograms'] = [];
  for (const e of snapshot) {
    if (!typeMatches(e, q.type)) continue;
    if (q.usedOnly && !isUsed(e)) continue;
    const name = flatName(e);
    if (q.filter) {
      q.filter.lastIndex = 0;
      if (!q.filter.test(name)) continue;
    }
    if (e.kind === 'histogram') histograms.push({ name, e });
    else scalars.push({ name, e });
  }
  // Envoy sorts by name so diffs between two dumps are readable.
  const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  scalars.sort(byName);
  histograms.sort(byName);
  return { scalars, histograms };
}

/**
 * Estimates a quantile (0..100) from bucket counts by linear interpolation inside the bucket that
 * holds the rank. Samples above the last bound are reported at the last bound (their exact values
 * were not kept). Returns null when there are no samples.
 */
export function quantile(h: HistogramEntry, percent: number): number | null {
  if (h.count === 0) return null;
  const rank = (percent / 100) * h.count;
  let cumulative = 0;
  for (let i = 0; i < h.buckets.length; i++) {
    const c = h.counts[i] ?? 0;
    if (c === 0) continue;
    const lower = i === 0 ? 0 : h.buckets[i - 1]!;
    const upper = h.buckets[i]!;
    if (cumulative + c >= rank) {
      const frac = (rank - cumulative) / c;
      return lower + (upper - lower) * Math.min(1, Math.max(0, frac));
    }
    cumulative += c;
  }
  return h.buckets[h.buckets.length - 1] ?? h.sum / h.count;
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(6)));
}

export type HistogramBucketsMode = 'none' | 'cumulative' | 'disjoint';

function bucketCounts(h: HistogramEntry, mode: HistogramBucketsMode): number[] {
  if (mode === 'disjoint') return [...h.counts];
  const out: number[] = [];
  let c = 0;
  for (const n of h.counts) out.push((c += n));
  return out;
}

/** Envoy's plain-text `/stats`: `name: value` lines, then histograms as quantile (or bucket) summaries. */
export function renderText(snapshot: StatsSnapshot, q: StatsQuery, buckets: HistogramBucketsMode = 'none'): string {
  const { scalars, histograms } = select(snapshot, q);
  const lines: string[] = [];
  for (const { name, e } of scalars) lines.push(`${name}: ${(e as { value: number }).value}`);
  for (const { name, e } of histograms) {
    if (buckets !== 'none') {
      const counts = bucketCounts(e, buckets);
      // Interval values are not tracked separately; Envoy prints the interval first, we repeat 0.
      lines.push(`${name}: ${e.buckets.map((b, i) => `B${fmt(b)}(0,${counts[i]})`).join(' ')}`);
    } else if (e.count === 0) {
      lines.push(`${name}: No recorded values`);
    } else {
      // `P<q>(interval,cumulative)`: we keep cumulative data only, so the interval is `nan` as in
      // Envoy when the current interval has no samples.
      lines.push(`${name}: ${SUPPORTED_QUANTILES.map((p) => `P${p}(nan,${fmt(quantile(e, p)!)})`).join(' ')}`);
    }
  }
  return lines.length ? lines.join('\n') + '\n' : '';
}

/** Envoy's `/stats?format=json`: `{stats: [{name, value}..., {histograms: {...}}]}`. */
export function renderJson(snapshot: StatsSnapshot, q: StatsQuery, buckets: HistogramBucketsMode = 'none'): unknown {
  const { scalars, histograms } = select(snapshot, q);
  const stats: unknown[] = scalars.map(({ name, e }) => ({ name, value: (e as { value: number }).value }));
  if (histograms.length > 0) {
    if (buckets !== 'none') {
      stats.push({
        histograms: histograms.map(({ name, e }) => {
          const counts = bucketCounts(e, buckets);
          return { name, buckets: e.buckets.map((b, i) => ({ upper_bound: b, interval: 0, cumulative: counts[i] })), sum: e.sum, count: e.count };
        }),
      });
    } else {
      stats.push({
        histograms: {
          supported_quantiles: SUPPORTED_QUANTILES,
          computed_quantiles: histograms.map(({ name, e }) => ({
            name,
            values: SUPPORTED_QUANTILES.map((p) => {
              const v = quantile(e, p);
              return { interval: null, cumulative: v === null ? null : Number(v.toPrecision(6)) };
            }),
          })),
        },
      });
    }
  }
  return { stats };
}

// ------------------------------------------------------------------ Prometheus

interface Extractor {
  tag: string;
  re: RegExp;
}

// Istio's bootstrap `stats_tags` (cluster_name with FQDN-aware matching) plus Envoy's defaults that
// matter for the stats this proxy emits. Group 1 is removed from the name, group 2 is the value.
const ADDR = String.raw`((?:[_.0-9]*|[_\[\]aAbBcCdDeEfF0-9]*))`;
const EXTRACTORS: Extractor[] = [
  { tag: 'cluster_name', re: /^cluster\.((.+?(?:\..+?\.svc\.cluster\.local)?)\.)/d },
  { tag: 'tcp_prefix', re: /^tcp\.((.*?)\.)\w+?$/d },
  { tag: 'response_code', re: /_rq(_(\d{3}))$/d },
  { tag: 'response_code_class', re: /_rq(_(\dxx))$/d },
  { tag: 'http_conn_manager_listener_prefix', re: new RegExp(String.raw`^listener(?=\.).*?\.http\.(${ADDR}\.)`, 'd') },
  { tag: 'http_conn_manager_prefix', re: /^http\.((.*?)\.)/d },
  { tag: 'listener_address', re: new RegExp(String.raw`^listener\.(${ADDR}\.)`, 'd') },
];

interface PromName {
  name: string;
  labels: [string, string][];
}

/** Envoy's sanitizer: anything outside [a-zA-Z0-9_:] becomes `_`; a leading digit gets a `_`. */
export function sanitizeMetricName(s: string): string {
  let out = s.replace(/[^a-zA-Z0-9_:]/g, '_');
  if (/^[0-9]/.test(out)) out = '_' + out;
  return out;
}

function sanitizeLabelName(s: string): string {
  let out = s.replace(/[^a-zA-Z0-9_]/g, '_');
  if (/^[0-9]/.test(out)) out = '_' + out;
  return out;
}

const CUSTOM_NAMESPACES = ['wasmcustom.', 'istiocustom.'];

// Scrapes repeat the same names; extraction is regex work worth caching. Bounded so a burst of
// short-lived names cannot grow it without limit.
const promNameCache = new Map<string, PromName>();
const PROM_CACHE_MAX = 50_000;

export function prometheusName(name: string, hasTags: boolean): PromName {
  const cacheKey = hasTags ? '\u0001' + name : name;
  const cached = promNameCache.get(cacheKey);
  if (cached) return cached;
  let result: PromName | undefined;
  if (name.startsWith('istio_')) {
    result = { name: sanitizeMetricName(name), labels: [] };
  } else {
    for (const ns of CUSTOM_NAMESPACES) {
      if (name.startsWith(ns)) {
        result = { name: sanitizeMetricName(name.slice(ns.length)), labels: [] };
        break;
      }
    }
  }
  if (!result) {
    let rest = name;
    const labels: [string, string][] = [];
    if (!hasTags) {
      for (const { tag, re } of EXTRACTORS) {
        const m = re.exec(rest);
        const span = m?.indices?.[1];
        if (!m || !span || m[2] === undefined) continue;
        labels.push([tag, m[2]]);
        rest = rest.slice(0, span[0]) + rest.slice(span[1]);
      }
    }
    result = { name: 'envoy_' + sanitizeMetricName(rest), labels };
  }
  if (promNameCache.size >= PROM_CACHE_MAX) promNameCache.clear();
  promNameCache.set(cacheKey, result);
  return result;
}

function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

// Label names repeat across every series of a family; sanitizing them once is enough.
const labelNameCache = new Map<string, string>();
function labelName(k: string): string {
  let n = labelNameCache.get(k);
  if (n === undefined) {
    n = sanitizeLabelName(k);
    if (labelNameCache.size < 10_000) labelNameCache.set(k, n);
  }
  return n;
}

const NEEDS_ESCAPE = /[\\\n"]/;

/** `k="v",k="v"` (no braces), escaped once per series and reused for all its sample lines. */
function labelBody(labels: Iterable<readonly [string, string]>): string {
  let out = '';
  for (const [k, v] of labels) {
    if (out) out += ',';
    out += `${labelName(k)}="${NEEDS_ESCAPE.test(v) ? escapeLabelValue(v) : v}"`;
  }
  return out;
}

function promNumber(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

/** Prometheus text exposition (0.0.4) of the snapshot; one `# TYPE` line per metric family. */
/** A growable byte buffer: the exposition is written as bytes, ready for the socket. */
class ByteWriter {
  buf: Buffer;
  len = 0;
  constructor(sizeHint: number) {
    this.buf = Buffer.allocUnsafe(Math.max(1024, sizeHint));
  }
  #ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  str(s: string): void {
    // Worst case 3 bytes per UTF-16 unit; exact length is not worth a pass.
    this.#ensure(s.length * 3);
    this.len += this.buf.write(s, this.len, 'utf8');
  }
  bytes(b: Buffer): void {
    this.#ensure(b.length);
    b.copy(this.buf, this.len);
    this.len += b.length;
  }
  result(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

/**
 * Prometheus text exposition (0.0.4) of the snapshot, as bytes; one `# TYPE` line per family.
 * Written straight into a Buffer: Istio label sets are ~800 bytes and a histogram repeats its set
 * on ~20 lines, so a scrape of a busy proxy is tens of MB. Each series' label prefix is encoded
 * once and then copied per line, and nothing is built as a JS string and re-encoded.
 */
export function renderPrometheusBuffer(snapshot: StatsSnapshot, q: StatsQuery = {}): Buffer {
  // Pass 1: group selected entries by family (a family's series must be contiguous).
  const families = new Map<string, { type: 'counter' | 'gauge' | 'histogram'; entries: [StatEntry, string][] }>();
  // Output size estimate, so the buffer is allocated once instead of doubling (and copying) its way up.
  let estimate = 0;
  for (const e of snapshot) {
    if (q.usedOnly && !isUsed(e)) continue;
    if (!typeMatches(e, q.type)) continue;
    if (q.filter) {
      q.filter.lastIndex = 0;
      if (!q.filter.test(flatName(e))) continue;
    }
    let hasTags = false;
    for (const _ in e.tags) {
      hasTags = true;
      break;
    }
    const pn = prometheusName(e.name, hasTags);
    let fam = families.get(pn.name);
    if (!fam) families.set(pn.name, (fam = { type: e.kind, entries: [] }));
    else if (fam.type !== e.kind) continue; // A family has one type; a clash would make the exposition invalid.
    const body = labelBody(hasTags ? Object.entries(e.tags) : pn.labels);
    fam.entries.push([e, body]);
    const lines = e.kind === 'histogram' ? e.buckets.length + 3 : 1;
    estimate += lines * (pn.name.length + body.length + 40);
  }
  // Pass 2: write family by family.
  const w = new ByteWriter(estimate + families.size * 100);
  const leStrings = new Map<number, string>();
  for (const name of [...families.keys()].sort()) {
    const fam = families.get(name)!;
    w.str(`# TYPE ${name} ${fam.type}\n`);
    for (const [e, body] of fam.entries) {
      if (e.kind === 'histogram') {
        const open = Buffer.from(body ? `${name}_bucket{${body},le="` : `${name}_bucket{le="`);
        let c = 0;
        for (let i = 0; i < e.buckets.length; i++) {
          c += e.counts[i] ?? 0;
          const b = e.buckets[i]!;
          let le = leStrings.get(b);
          if (le === undefined) leStrings.set(b, (le = promNumber(b)));
          w.bytes(open);
          w.str(`${le}"} ${c}\n`);
        }
        w.bytes(open);
        const plain = body ? `{${body}}` : '';
        w.str(`+Inf"} ${e.count}\n${name}_sum${plain} ${promNumber(e.sum)}\n${name}_count${plain} ${e.count}\n`);
      } else {
        w.str(body ? `${name}{${body}} ${promNumber(e.value)}\n` : `${name} ${promNumber(e.value)}\n`);
      }
    }
  }
  return w.result();
}

/** Prometheus text exposition (0.0.4) of the snapshot, as a string. */
export function renderPrometheus(snapshot: StatsSnapshot, q: StatsQuery = {}): string {
  return renderPrometheusBuffer(snapshot, q).toString('utf8');
}
