/**
 * A strict parser for the Prometheus text format (0.0.4), used to check that /stats/prometheus
 * output is valid: every sample belongs to the family declared by the preceding `# TYPE`, names and
 * labels are well-formed, label values are correctly escaped, histogram buckets are cumulative
 * and end with `le="+Inf"` equal to `_count`.
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
export interface Family {
  name: string;
  type: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function parseLabels(s: string, line: number): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < s.length) {
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new Error(`line ${line}: label without '='`);
    const name = s.slice(i, eq);
    if (!LABEL.test(name)) throw new Error(`line ${line}: bad label name '${name}'`);
    if (s[eq + 1] !== '"') throw new Error(`line ${line}: label value not quoted`);
    let j = eq + 2;
    let v = '';
    for (;;) {
      const c = s[j];
      if (c === undefined) throw new Error(`line ${line}: unterminated label value`);
      if (c === '\\') {
        const n = s[j + 1];
        if (n === 'n') v += '\n';
        else if (n === '\\' || n === '"') v += n;
        else throw new Error(`line ${line}: bad escape \\${n}`);
        j += 2;
        continue;
      }
      if (c === '"') break;
      if (c === '\n') throw new Error(`line ${line}: raw newline in label`);
      v += c;
      j++;
    }
    if (name in out) throw new Error(`line ${line}: duplicate label ${name}`);
    out[name] = v;
    j++;
    if (j < s.length) {
      if (s[j] !== ',') throw new Error(`line ${line}: expected ',' after label`);
      j++;
    }
    i = j;
  }
  return out;
}

function parseValue(v: string, line: number): number {
  if (v === '+Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  if (v === 'NaN') return NaN;
  const n = Number(v);
  if (v === '' || Number.isNaN(n)) throw new Error(`line ${line}: bad value '${v}'`);
  return n;
}

export function parsePrometheus(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  let current: Family | undefined;
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const lines = text.split('\n');
  lines.pop();
  lines.forEach((raw, idx) => {
    const line = idx + 1;
    if (raw.startsWith('# TYPE ')) {
      const [name, type, extra] = raw.slice(7).split(' ');
      if (!name || !NAME.test(name) || extra !== undefined) throw new Error(`line ${line}: bad TYPE line`);
      if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(type ?? '')) throw new Error(`line ${line}: bad type ${type}`);
      if (families.has(name)) throw new Error(`line ${line}: family ${name} declared twice`);
      current = { name, type: type!, samples: [] };
      families.set(name, current);
      return;
    }
    if (raw.startsWith('#')) return;
    if (raw === '') throw new Error(`line ${line}: empty line`);
    const m = /^([^{\s]+)(?:\{(.*)\})? (\S+)$/.exec(raw);
    if (!m) throw new Error(`line ${line}: bad sample '${raw}'`);
    const name = m[1]!;
    if (!NAME.test(name)) throw new Error(`line ${line}: bad metric name ${name}`);
    const labels = m[2] ? parseLabels(m[2], line) : {};
    const value = parseValue(m[3]!, line);
    if (!current) throw new Error(`line ${line}: sample before any TYPE`);
    const fam = current.name;
    const ok = current.type === 'histogram' ? [`${fam}_bucket`, `${fam}_sum`, `${fam}_count`].includes(name) : name === fam;
    if (!ok) throw new Error(`line ${line}: sample ${name} outside its family (${fam})`);
    current.samples.push({ name, labels, value });
  });
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

function seriesKey(labels: Record<string, string>): string {
  return Object.entries(labels)
    .filter(([k]) => k !== 'le')
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

function checkHistogram(f: Family): void {
  const series = new Map<string, { buckets: [number, number][]; count?: number; sum?: number }>();
  for (const s of f.samples) {
    const k = seriesKey(s.labels);
    let e = series.get(k);
    if (!e) series.set(k, (e = { buckets: [] }));
    if (s.name.endsWith('_bucket')) {
      if (s.labels.le === undefined) throw new Error(`${f.name}: bucket without le`);
      e.buckets.push([parseValue(s.labels.le, 0), s.value]);
    } else if (s.name.endsWith('_count')) e.count = s.value;
    else e.sum = s.value;
  }
  for (const [k, e] of series) {
    if (e.count === undefined || e.sum === undefined) throw new Error(`${f.name}{${k}}: missing _count or _sum`);
    const last = e.buckets[e.buckets.length - 1];
    if (!last || last[0] !== Infinity) throw new Error(`${f.name}{${k}}: last bucket is not +Inf`);
    if (last[1] !== e.count) throw new Error(`${f.name}{${k}}: +Inf bucket ${last[1]} != count ${e.count}`);
    for (let i = 1; i < e.buckets.length; i++) {
      if (e.buckets[i]![0] <= e.buckets[i - 1]![0]) throw new Error(`${f.name}{${k}}: le not increasing`);
      if (e.buckets[i]![1] < e.buckets[i - 1]![1]) throw new Error(`${f.name}{${k}}: buckets not cumulative`);
    }
  }
}
