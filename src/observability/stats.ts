/**
 * An Envoy-style stats store: counters, gauges and histograms identified by a dotted name plus
 * optional tags (Prometheus labels). One store per worker; the admin server merges snapshots.
 * Written by hand because the names, flat `/stats` rendering and cross-thread snapshots are
 * Envoy-specific; prom-client is used only for the exposition format.
 */
export type Tags = Readonly<Record<string, string>>;

export interface Counter {
  inc(n?: number): void;
  readonly value: number;
}
export interface Gauge {
  set(v: number): void;
  add(n: number): void;
  sub(n: number): void;
  readonly value: number;
}
export interface Histogram {
  record(v: number): void;
}

/** Envoy's default histogram bucket bounds (ms-oriented), reused for Istio's duration metric. */
export const DEFAULT_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
/** Byte-size buckets for istio_request_bytes / istio_response_bytes. */
export const BYTE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000];

interface CounterEntry { kind: 'counter'; name: string; tags: Tags; value: number }
interface GaugeEntry { kind: 'gauge'; name: string; tags: Tags; value: number }
interface HistogramEntry { kind: 'histogram'; name: string; tags: Tags; buckets: number[]; counts: number[]; sum: number; count: number }
export type StatEntry = CounterEntry | GaugeEntry | HistogramEntry;

/** Serializable snapshot (posted between threads). */
export type StatsSnapshot = StatEntry[];

function keyOf(name: string, tags: Tags | undefined): string {
  if (!tags) return name;
  // join() yields one flat string. Repeated `+=` would leave a rope of dozens of cons-string
  // nodes per key, retained by the Map: with Istio's 25 labels that was ~4 KB and several
  // scavenges' worth of garbage per series.
  const parts = [name];
  for (const t in tags) parts.push(`${t}=${tags[t]}`);
  return parts.length === 1 ? name : parts.join('\u0000');
}

export class StatsStore {
  readonly #entries = new Map<string, StatEntry>();

  counter(name: string, tags?: Tags): Counter {
    const key = keyOf(name, tags);
    let e = this.#entries.get(key) as CounterEntry | undefined;
    if (!e) {
      e = { kind: 'counter', name, tags: tags ?? {}, value: 0 };
      this.#entries.set(key, e);
    }
    const entry = e;
    return {
      inc(n = 1) { entry.value += n; },
      get value() { return entry.value; },
    };
  }

  gauge(name: string, tags?: Tags): Gauge {
    const key = keyOf(name, tags);
    let e = this.#entries.get(key) as GaugeEntry | undefined;
    if (!e) {
      e = { kind: 'gauge', name, tags: tags ?? {}, value: 0 };
      this.#entries.set(key, e);
    }
    const entry = e;
    return {
      set(v) { entry.value = v; },
      add(n) { entry.value += n; },
      sub(n) { entry.value -= n; },
      get value() { return entry.value; },
    };
  }

  histogram(name: string, tags?: Tags, buckets: number[] = DEFAULT_BUCKETS): Histogram {
    const key = keyOf(name, tags);
    let e = this.#entries.get(key) as HistogramEntry | undefined;
    if (!e) {
      e = { kind: 'histogram', name, tags: tags ?? {}, buckets, counts: new Array(buckets.length).fill(0), sum: 0, count: 0 };
      this.#entries.set(key, e);
    }
    const entry = e;
    return {
      record(v: number) {
        entry.sum += v;
        entry.count++;
        const b = entry.buckets;
        for (let i = 0; i < b.length; i++) if (v <= b[i]!) { entry.counts[i]!++; return; }
      },
    };
  }

  /** Removes every stat whose name starts with `prefix` (e.g. when an extension is removed). */
  removeByPrefix(prefix: string): void {
    for (const [k, e] of this.#entries) if (e.name.startsWith(prefix)) this.#entries.delete(k);
  }

  /** Zeroes every counter (Envoy's `/reset_counters`); gauges and histograms are left alone. */
  resetCounters(): void {
    for (const e of this.#entries.values()) if (e.kind === 'counter') e.value = 0;
  }

  snapshot(): StatsSnapshot {
    const out: StatEntry[] = [];
    for (const e of this.#entries.values()) {
      out.push(e.kind === 'histogram' ? { ...e, counts: [...e.counts] } : { ...e });
    }
    return out;
  }
}

/** Adds snapshots from several workers into one (counters and histograms sum; gauges sum too, as Envoy's accumulate mode). */
export function mergeSnapshots(snapshots: StatsSnapshot[]): StatsSnapshot {
  const merged = new Map<string, StatEntry>();
  for (const snap of snapshots) {
    for (const e of snap) {
      const key = keyOf(e.name, e.tags);
      const prev = merged.get(key);
      if (!prev) {
        merged.set(key, e.kind === 'histogram' ? { ...e, counts: [...e.counts] } : { ...e });
      } else if (prev.kind === 'histogram' && e.kind === 'histogram') {
        for (let i = 0; i < prev.counts.length; i++) prev.counts[i]! += e.counts[i] ?? 0;
        prev.sum += e.sum;
        prev.count += e.count;
      } else if (prev.kind !== 'histogram' && e.kind !== 'histogram') {
        prev.value += e.value;
      }
    }
  }
  return [...merged.values()];
}
