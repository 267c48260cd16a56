/**
 * The benchmark's parity plugin (bench/plugins/parity.as: AssemblyScript against the ABI directly,
 * no SDK, `--runtime none`), built as the bench builds it. Its behaviour is what the bench claims
 * (x-number → x-parity odd/even, nothing otherwise), it stays a portable Proxy-Wasm module (no
 * import Envoy lacks), and its hand-written per-stream table and allocator hold up under many
 * interleaved streams without growing memory per request.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { HeaderMap } from '../../src/filters/header-map.ts';
import { buildPlugins } from '../../bench/lib/plugins.ts';
import { exchange, FakeStream } from './helpers/driver.ts';
import { factory, plugin } from './helpers/fixtures.ts';

const bytes = buildPlugins().then(async (b) => {
  if (b.parity instanceof Error) throw b.parity;
  return new Uint8Array(await readFile(b.parity));
});
bytes.catch(() => undefined);

const REQ: Array<[string, string]> = [[':method', 'GET'], [':path', '/'], [':authority', 'h'], [':scheme', 'http']];

test('bench parity plugin: x-parity from x-number, nothing when absent or not a whole number', { timeout: 240_000 }, async () => {
  const b = await bytes;
  const imports = WebAssembly.Module.imports(new WebAssembly.Module(b)).map((i) => `${i.module}.${i.name}`);
  assert.deepEqual(imports.sort(), ['env.proxy_add_header_map_value', 'env.proxy_get_header_map_value'], 'only Proxy-Wasm imports (no env.abort)');
  const p = await plugin(b, { rootId: 'parity' });
  assert.equal(p.state, 'ready', p.reason);
  assert.equal(p.compiled?.abi, '0.2.0');
  const cases: Array<[string | undefined, string | undefined]> = [
    ['7', 'odd'], ['12', 'even'], ['0', 'even'], ['-3', 'odd'], ['-40', 'even'],
    ['123456789012345678901234567890123', 'odd'], // longer than any integer type: parity of the last digit
    [undefined, undefined], ['', undefined], ['-', undefined], ['abc', undefined], ['7a', undefined],
    ['1.5', undefined], [' 7', undefined], ['+7', undefined], ['٧', undefined], // Arabic-Indic seven: not ASCII
  ];
  for (const [num, want] of cases) {
    const ex = await exchange(factory(p), { headers: num === undefined ? REQ : [...REQ, ['x-number', num]] });
    assert.ok(ex.response, `response for ${JSON.stringify(num)}`);
    assert.deepEqual(ex.response.headers.getAll('x-parity'), want === undefined ? [] : [want], `x-number ${JSON.stringify(num)}`);
    assert.equal(ex.upstream?.headers.get('x-parity'), undefined, 'nothing added to the request');
  }
});

test('bench parity plugin: 5000 interleaved streams, some ending without a response; memory stays flat afterwards', { timeout: 240_000 }, async () => {
  const p = await plugin(await bytes, { rootId: 'parity' });
  const start = (n: number) => {
    const s = new FakeStream();
    s.reqHeaders = HeaderMap.fromPairs([...REQ, ['x-number', String(n)]]);
    const f = p.createHttpFilter(s)!;
    assert.equal(f.decodeHeaders!(s.reqHeaders, true), 0);
    return { s, f, n };
  };
  const finish = (x: ReturnType<typeof start>, respond: boolean) => {
    if (respond) {
      x.s.respHeaders = HeaderMap.fromPairs([[':status', '200']]);
      assert.equal(x.f.encodeHeaders!(x.s.respHeaders, true), 0);
      assert.equal(x.s.respHeaders.get('x-parity'), x.n % 2 === 0 ? 'even' : 'odd', `stream ${x.n}`);
    }
    x.f.log?.();
    x.f.onDestroy?.();
  };
  // All open at once (the verdict table grows several times), then answered in a scrambled order;
  // every third stream ends without response headers (its verdict is dropped by on_delete).
  const open = Array.from({ length: 5000 }, (_, i) => start(i));
  for (let i = 0; i < open.length; i++) {
    const x = open[(i * 2741) % open.length]!;
    finish(x, x.n % 3 !== 0);
  }
  assert.equal(p.vm?.failed, false);
  const after = p.vm!.memoryBytes();
  for (let i = 0; i < 20_000; i++) finish(start(i + 7), i % 5 !== 0);
  assert.equal(p.vm!.memoryBytes(), after, 'no growth per request once the table is sized');
  assert.equal(p.vm?.failed, false);
});
