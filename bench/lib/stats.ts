/** Small statistics helpers: median and spread of repeated runs. */

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** (max - min) / median, as a fraction: how far apart the runs were. */
export function spread(xs: number[]): number {
  if (xs.length < 2) return 0;
  const med = median(xs);
  return med === 0 ? 0 : (Math.max(...xs) - Math.min(...xs)) / med;
}

export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a';
}

export function fmt1(n: number): string {
  return Number.isFinite(n) ? n.toFixed(1) : 'n/a';
}

export function fmt2(n: number): string {
  return Number.isFinite(n) ? n.toFixed(2) : 'n/a';
}

export function pct(n: number): string {
  return Number.isFinite(n) ? `${(n * 100).toFixed(0)}%` : 'n/a';
}

/** Microseconds as µs below 10 ms, else ms. */
export function fmtUs(us: number): string {
  if (!Number.isFinite(us)) return 'n/a';
  return us < 10_000 ? `${Math.round(us)} µs` : `${(us / 1000).toFixed(1)} ms`;
}
