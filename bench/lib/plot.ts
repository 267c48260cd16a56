/**
 * PNG plots without a browser: the charts are drawn as SVG here and rasterised by rsvg-convert
 * (Debian librsvg2-bin, installed by the setup step). Two chart kinds are enough: horizontal
 * grouped bars (one row per contender) and lines (memory by concurrency).
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { label as specLabel } from './contenders.ts';
import type { CellResult } from './macro.ts';
import { ENVOY_PUBLISHED } from './memory.ts';
import type { Report } from './report.ts';

const FONT = 'DejaVu Sans, sans-serif';
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export const PROXY_COLORS: Record<string, string> = {
  direct: '#9e9e9e',
  nginx: '#2e7d32',
  haproxy: '#1565c0',
  meshext: '#e65100',
  'node-net': '#795548',
};

interface BarSeries {
  name: string;
  color: string;
}
interface BarRow {
  label: string;
  /** One value per series (NaN = absent). */
  values: number[];
  /** Colour override for single-series charts. */
  color?: string;
  note?: string;
}

function niceTicks(max: number, n = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = 0; v <= max + step * 0.001; v += step) out.push(v);
  if (out[out.length - 1]! < max) out.push(out[out.length - 1]! + step);
  return out;
}

function fmtTick(v: number): string {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  if (v >= 100) return `${Math.round(v)}`;
  return `${+v.toFixed(v >= 10 ? 1 : 2)}`;
}

/** Horizontal grouped bars; `log` uses a log10 axis (latencies). */
function barChart(title: string, unit: string, series: BarSeries[], rows: BarRow[], opts: { log?: boolean; legend?: BarSeries[] } = {}): string {
  const labelW = 290;
  const plotW = 560;
  const barH = 14;
  const groupGap = 10;
  const top = 58;
  const groupH = series.length * barH + groupGap;
  const height = top + rows.length * groupH + 50;
  const width = labelW + plotW + 110;
  const all = rows.flatMap((r) => r.values).filter((v) => Number.isFinite(v) && v > 0);
  const max = all.length ? Math.max(...all) : 1;
  let x: (v: number) => number;
  let ticks: number[];
  if (opts.log) {
    const lo = 10 ** Math.floor(Math.log10(Math.min(...(all.length ? all : [1]))));
    const hi = 10 ** Math.ceil(Math.log10(max));
    ticks = [];
    for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t);
    x = (v) => labelW + (plotW * (Math.log10(Math.max(v, lo)) - Math.log10(lo))) / (Math.log10(hi) - Math.log10(lo) || 1);
  } else {
    ticks = niceTicks(max);
    const hi = ticks[ticks.length - 1]!;
    x = (v) => labelW + (plotW * v) / hi;
  }
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="${FONT}" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
  ];
  // Legend.
  let lx = labelW;
  for (const s of opts.legend ?? series) {
    parts.push(`<rect x="${lx}" y="32" width="12" height="12" fill="${s.color}"/><text x="${lx + 16}" y="42">${esc(s.name)}</text>`);
    lx += 24 + s.name.length * 7;
  }
  for (const t of ticks) {
    const tx = x(t);
    parts.push(`<line x1="${tx}" y1="${top - 4}" x2="${tx}" y2="${height - 42}" stroke="#ddd"/>`);
    parts.push(`<text x="${tx}" y="${height - 28}" text-anchor="middle" fill="#444">${fmtTick(t)}</text>`);
  }
  parts.push(`<text x="${labelW + plotW / 2}" y="${height - 10}" text-anchor="middle" fill="#444">${esc(unit)}</text>`);
  rows.forEach((r, i) => {
    const y0 = top + i * groupH;
    parts.push(`<text x="${labelW - 8}" y="${y0 + (series.length * barH) / 2 + 4}" text-anchor="end">${esc(r.label)}</text>`);
    r.values.forEach((v, j) => {
      const y = y0 + j * barH;
      if (!Number.isFinite(v)) {
        parts.push(`<text x="${labelW + 4}" y="${y + barH - 3}" fill="#999" font-style="italic">${esc(r.note ?? 'n/a')}</text>`);
        return;
      }
      const color = series.length === 1 && r.color ? r.color : series[j]!.color;
      const w = Math.max(1, x(v) - labelW);
      parts.push(`<rect x="${labelW}" y="${y}" width="${w}" height="${barH - 2}" fill="${color}"/>`);
      parts.push(`<text x="${labelW + w + 4}" y="${y + barH - 3}" fill="#333" font-size="11">${fmtTick(v)}</text>`);
    });
  });
  parts.push('</svg>');
  return parts.join('\n');
}

interface Line {
  name: string;
  color: string;
  dashed?: boolean;
  points: Array<[number, number]>;
}

function lineChart(title: string, xLabel: string, yLabel: string, xs: number[], lines: Line[]): string {
  const width = 900;
  const height = 480;
  const left = 70;
  const right = 260;
  const top = 50;
  const bottom = 60;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const ys = lines.flatMap((l) => l.points.map((p) => p[1])).filter(Number.isFinite);
  const ticks = niceTicks(ys.length ? Math.max(...ys) : 1, 6);
  const hi = ticks[ticks.length - 1]!;
  // x: log2 spacing so 1, 2, 4, 8, 16 are evenly apart.
  const lx = (v: number) => Math.log2(v);
  const x0 = lx(Math.min(...xs));
  const x1 = lx(Math.max(...xs));
  const X = (v: number) => left + (plotW * (lx(v) - x0)) / (x1 - x0 || 1);
  const Y = (v: number) => top + plotH - (plotH * v) / hi;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="${FONT}" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
  ];
  for (const t of ticks) {
    parts.push(`<line x1="${left}" y1="${Y(t)}" x2="${left + plotW}" y2="${Y(t)}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 6}" y="${Y(t) + 4}" text-anchor="end" fill="#444">${fmtTick(t)}</text>`);
  }
  for (const v of xs) {
    parts.push(`<line x1="${X(v)}" y1="${top}" x2="${X(v)}" y2="${top + plotH}" stroke="#eee"/>`);
    parts.push(`<text x="${X(v)}" y="${top + plotH + 18}" text-anchor="middle" fill="#444">${v}</text>`);
  }
  parts.push(`<text x="${left + plotW / 2}" y="${height - 18}" text-anchor="middle" fill="#444">${esc(xLabel)}</text>`);
  parts.push(`<text x="18" y="${top + plotH / 2}" text-anchor="middle" fill="#444" transform="rotate(-90 18 ${top + plotH / 2})">${esc(yLabel)}</text>`);
  lines.forEach((l, i) => {
    const pts = l.points.filter((p) => Number.isFinite(p[1]));
    if (pts.length) {
      parts.push(`<polyline fill="none" stroke="${l.color}" stroke-width="2.5" ${l.dashed ? 'stroke-dasharray="7 5"' : ''} points="${pts.map((p) => `${X(p[0])},${Y(p[1])}`).join(' ')}"/>`);
      for (const p of pts) parts.push(`<circle cx="${X(p[0])}" cy="${Y(p[1])}" r="3.5" fill="${l.color}"/>`);
    }
    const ly = top + 10 + i * 22;
    parts.push(`<line x1="${left + plotW + 16}" y1="${ly}" x2="${left + plotW + 44}" y2="${ly}" stroke="${l.color}" stroke-width="2.5" ${l.dashed ? 'stroke-dasharray="7 5"' : ''}/>`);
    parts.push(`<text x="${left + plotW + 50}" y="${ly + 4}">${esc(l.name)}${pts.length ? '' : ' (n/a)'}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

function toPng(svg: string, dir: string, name: string): string {
  const svgPath = join(dir, `${name}.svg`);
  const pngPath = join(dir, `${name}.png`);
  writeFileSync(svgPath, svg);
  execFileSync('rsvg-convert', ['-o', pngPath, svgPath], { timeout: 30_000 });
  return `${name}.png`;
}

function cellLabel(c: CellResult, scenarioTitle: Map<string, string>): string {
  return `${scenarioTitle.get(c.scenario) ?? c.scenario}: ${specLabel(c.spec, c.luaEngine)}`;
}

export async function writePlots(r: Report, dir: string): Promise<string[]> {
  const out: string[] = [];
  const short = new Map(r.scenarios.map((s) => [s.id, s.id]));
  const cells = r.cells;
  if (cells.length) {
    const rows = (val: (c: CellResult) => number): BarRow[] =>
      cells.map((c) => ({ label: cellLabel(c, short), values: [c.status === 'ok' ? val(c) : NaN], color: PROXY_COLORS[c.spec.proxy], note: c.status === 'ok' ? 'n/a' : c.status === 'unavailable' ? 'not available yet' : 'failed' }));
    const legend = Object.entries(PROXY_COLORS).map(([name, color]) => ({ name, color }));
    // One bar per row, coloured by proxy; the legend names the colours.
    const one = [{ name: 'value', color: '#888' }];
    out.push(toPng(barChart('Throughput by scenario (median req/s, one proxy core)', 'requests per second', one, rows((c) => c.rps), { legend }), dir, 'throughput'));
    out.push(toPng(barChart('Proxy CPU per request (median, lower is better)', 'µs of proxy CPU per request', one, rows((c) => c.cpuUsPerReq), { legend }), dir, 'cpu-per-request'));
    const lat = cells.filter((c) => c.latency);
    if (lat.length) {
      const series = [
        { name: 'p50', color: '#90caf9' },
        { name: 'p99', color: '#1e88e5' },
        { name: 'p99.9', color: '#0d47a1' },
      ];
      const latRows = lat.map((c) => ({ label: `${cellLabel(c, short)} @${c.latency!.rate}/s`, values: [c.latency!.p50us, c.latency!.p99us, c.latency!.p999us] }));
      out.push(toPng(barChart('Latency at a fixed moderate rate (wrk, paced; log scale)', 'µs', series, latRows, { log: true }), dir, 'latency'));
    }
  }
  if (r.memory.length) {
    const xs = [...new Set(r.memory.map((m) => m.concurrency))].sort((a, b) => a - b);
    const pick = (v: string) => xs.map((c): [number, number] => {
      const p = r.memory.find((m) => m.concurrency === c && m.variant === v);
      return [c, p && p.status === 'ok' ? p.rssMiB : NaN];
    });
    const envoyXs = xs.filter((c) => ENVOY_PUBLISHED[c]);
    const lines: Line[] = [
      { name: 'meshext, no extension', color: '#9e9e9e', points: pick('none') },
      { name: 'meshext + Lua coin flip', color: '#2e7d32', points: pick('lua') },
      { name: 'meshext + Wasm coin flip', color: '#e65100', points: pick('wasm') },
      { name: 'Envoy + Lua (published)', color: '#2e7d32', dashed: true, points: envoyXs.map((c) => [c, ENVOY_PUBLISHED[c]!.lua]) },
      { name: 'Envoy + Wasm V8 (published)', color: '#e65100', dashed: true, points: envoyXs.map((c) => [c, ENVOY_PUBLISHED[c]!.wasm]) },
    ];
    out.push(toPng(lineChart('Memory by --concurrency: coin-flip filter, light sequential load', 'workers (--concurrency)', 'process RSS (MiB)', xs, lines), dir, 'memory'));
  }
  return out;
}
