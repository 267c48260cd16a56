/**
 * Worker threads run a full GC after the data plane starts and after every extension set is
 * applied (worker.ts), through the gc() the main thread exposes to them (proxy.ts). Observed
 * with --trace-gc in a child process: V8 labels gc() collections "testing".
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const url = (p: string) => new URL(p, import.meta.url).href;

test('a worker collects after start, after the first extension set and after an update', () => {
  const script = `
    import { loadExtensionObjects } from ${JSON.stringify(url('../../src/config/extensions.ts'))};
    import { startProxy } from ${JSON.stringify(url('../../src/proxy/proxy.ts'))};
    import { bootstrap, routeAll, cluster } from ${JSON.stringify(url('../helpers/bootstrap.ts'))};
    const set = (code) => loadExtensionObjects([{ apiVersion: 'extensions.istio.io/v1alpha1', kind: 'TrafficExtension',
      metadata: { name: 'tag', namespace: 'default' }, spec: { lua: { inlineCode: code } } }]).set;
    const proxy = await startProxy({ bootstrap: bootstrap({ clusters: [cluster('c', 9)], routeTables: [routeAll('c')] }), concurrency: 1,
      extensions: set('function envoy_on_request(h) end') });
    await proxy.applyExtensionSet(set('function envoy_on_response(h) end'), []);
    await proxy.close();
    console.error('MARK typeof gc in main: ' + typeof globalThis.gc);
  `;
  // A file, not --input-type=module -e: workers inherit the execArgv and reject --input-type.
  const dir = mkdtempSync(join(tmpdir(), 'meshext-gc-'));
  const file = join(dir, 'run.mjs');
  writeFileSync(file, script);
  const r = spawnSync(process.execPath, ['--trace-gc', file], { encoding: 'utf8', timeout: 60_000 });
  rmSync(dir, { recursive: true, force: true });
  const out = r.stdout + r.stderr;
  assert.equal(r.status, 0, out.slice(-2000));
  // V8 prints the trace from C stdio, so its order against our lines is lost: count instead.
  const forced = out.split('\n').filter((l) => /Mark-Compact.*testing/.test(l)).length;
  assert.equal(forced, 3, 'one worker: after start, after the first set, after the update');
  assert.ok(out.includes('MARK typeof gc in main: undefined'), 'the main thread does not get gc()');
});

test("V8's allocation-site pretenuring is off for the workers unless MESHEXT_V8_PRETENURING=1", async () => {
  const { workerV8Flags } = await import('../../src/proxy/proxy.ts');
  assert.deepEqual(workerV8Flags({}), ['--expose-gc', '--no-allocation-site-pretenuring']);
  assert.deepEqual(workerV8Flags({ MESHEXT_V8_PRETENURING: '1' }), ['--expose-gc']);
});
