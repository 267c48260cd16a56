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

function labelString(labels: [string, string][], extra?: string): string {
  const parts: string[] = [];
  for (const [k, v] of labels) parts.push(`${sanitizeLabelName(k)}="${escapeLabelValue(v)}"`);
  if (extra) parts.push(extra);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function promNumber(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

/** Prometheus text exposition (0.0.4) of the snapshot; one `# TYPE` line per metric family. */
export function renderPrometheus(snapshot: StatsSnapshot, q: StatsQuery = {}): string {
  // Group samples by family: several stats (different clusters, different tag values) share one.
  const families = new Map<string, { type: 'counter' | 'gauge' | 'histogram'; lines: string[] }>();
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
    const labels: [string, string][] = hasTags ? Object.entries(e.tags) : pn.labels;
    let fam = families.get(pn.name);
    if (!fam) {
      fam = { type: e.kind, lines: [] };
      families.set(pn.name, fam);
    } else if (fam.type !== e.kind) {
      continue; // A family has one type; a clash would make the exposition invalid.
    }
    if (e.kind === 'histogram') {
      let c = 0;
      for (let i = 0; i < e.buckets.length; i++) {
        c += e.counts[i] ?? 0;
        fam.lines.push(`${pn.name}_bucket${labelString(labels, `le="${promNumber(e.buckets[i]!)}"`)} ${c}`);
      }
      fam.lines.push(`${pn.name}_bucket${labelString(labels, 'le="+Inf"')} ${e.count}`);
      fam.lines.push(`${pn.name}_sum${labelString(labels)} ${promNumber(e.sum)}`);
      fam.lines.push(`${pn.name}_count${labelString(labels)} ${e.count}`);
    } else {
      fam.lines.push(`${pn.name}${labelString(labels)} ${promNumber(e.value)}`);
    }
  }
  const names = [...families.keys()].sort();
  let out = '';
  for (const n of names) {
    const fam = families.get(n)!;
    out += `# TYPE ${n} ${fam.type}\n${fam.lines.join('\n')}\n`;
  }
  return out;
}
