/**
 * LuaJIT's fast path (write-behind queue and prefetch, see prelude.ts and script.ts) must be
 * invisible: header mutations and metadata sets reach the stream before anything else can look,
 * prefetched values are those a host call would have returned, and every case falls back to host
 * calls exactly. The same cases run on wasmoon, which has no fast path, as the reference.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HeaderMap } from '../../src/filters/header-map.ts';
import type { LuaEngine } from '../../src/lua/engine.ts';
import { getLuajitEngine, getWasmoonEngine } from '../../src/lua/engines.ts';
import { LEVEL, harness } from './driver.ts';

const REQ = (n: string | undefined, extra: [string, string][] = []): HeaderMap =>
  HeaderMap.fromPairs([[':method', 'GET'], [':path', '/'], [':authority', 'x'], ...(n === undefined ? [] : [['x-number', n] as [string, string]]), ...extra]);
const RESP = (): HeaderMap => HeaderMap.fromPairs([[':status', '200']]);

const PARITY = `
function envoy_on_request(h)
  local n = tonumber(h:headers():get("x-number"))
  if n == nil then return end
  h:streamInfo():dynamicMetadata():set("envoy.filters.http.lua", "parity", n % 2 == 0 and "even" or "odd")
end
function envoy_on_response(h)
  local meta = h:streamInfo():dynamicMetadata():get("envoy.filters.http.lua")
  if meta == nil then return end
  h:headers():add("x-parity", meta["parity"])
end`;

const engines: [string, () => Promise<LuaEngine | undefined>][] = [
  ['wasmoon', getWasmoonEngine],
  ['luajit', async () => getLuajitEngine()],
];

for (const [name, get] of engines) {
  describe(`fast path semantics (${name})`, async () => {
    const engine = await get();
    const skip = engine ? false : 'engine unavailable';

    it('parity over many requests: prefetched values follow each request, absent ones stay absent', { skip }, () => {
      const h = harness(engine!, PARITY);
      const cases: (string | undefined)[] = ['1', '2', undefined, '7', '10', undefined, 'x', '3', '4', '5'];
      for (let round = 0; round < 3; round++) {
        for (const n of cases) {
          const s = h.stream();
          s.decodeHeaders(REQ(n), true);
          const num = n === undefined ? NaN : Number(n);
          const want = Number.isNaN(num) ? undefined : num % 2 === 0 ? 'even' : 'odd';
          // what the access log / a Wasm filter reads once the request hook returned
          assert.equal(s.streamInfo.dynamicMetadata.get('envoy.filters.http.lua')?.parity, want);
          s.encodeHeaders(RESP(), true);
          assert.equal(s.respHeaders!.get('x-parity'), want);
          assert.deepEqual(s.respHeaders!.getAll('x-parity'), want === undefined ? [] : [want]);
          s.destroy();
        }
      }
      // a request without x-number raises in tonumber() (as in Envoy)
      assert.equal(h.errors(), 6);
      h.close();
    });

    it('get() joins repeated values, ignores case, and sees changes made before the hook', { skip }, () => {
      const h = harness(engine!, `
        function envoy_on_request(h)
          local hs = h:headers()
          hs:add("x-got", tostring((hs:get("X-Multi"))) .. "|" .. tostring((hs:get("x-multi"))) .. "|" .. tostring((hs:get("x-none"))))
        end`);
      for (const vals of [['a', 'b'], ['c'], [], ['d', 'e', 'f']]) {
        const s = h.stream();
        const m = REQ('1', vals.map((v) => ['x-multi', v] as [string, string]));
        s.decodeHeaders(m, true);
        const j = vals.length ? vals.join(',') : 'nil';
        assert.equal(m.get('x-got'), `${j}|${j}|nil`);
        s.destroy();
      }
      assert.equal(h.errors(), 0);
      h.close();
    });

    it('reads after writes in the same hook see the writes (queued or not)', { skip }, () => {
      const h = harness(engine!, `
        function envoy_on_request(h)
          local hs = h:headers()
          local before = (hs:get("x-number"))
          hs:add("x-number", "9")
          local after = (hs:get("x-number"))
          hs:replace("x-r", "1")
          hs:replace("x-r", "2")
          hs:remove("x-gone")
          local dm = h:streamInfo():dynamicMetadata()
          local m0 = (dm:get("ns"))
          dm:set("ns", "k", "v1")
          dm:set("ns", "n", 42)
          dm:set("ns", "b", true)
          local m1 = dm:get("ns")
          dm:set("ns", "k", "v2")
          local m2 = dm:get("ns")
          local seen = {}
          for k, v in pairs(hs) do seen[#seen + 1] = k .. "=" .. v end
          hs:add("x-log", table.concat({ tostring(before), tostring(after), tostring(m0 and m0.k), m1.k, tostring(m1.n), tostring(m1.b), m2.k, tostring((hs:get("x-r"))), tostring((hs:get("x-gone"))) }, ";"))
          hs:add("x-pairs", table.concat(seen, ","))
        end`);
      for (let i = 0; i < 5; i++) {
        const s = h.stream();
        const m = REQ(String(i), [['x-gone', 'bye']]);
        s.decodeHeaders(m, true);
        assert.equal(m.get('x-log'), `${i};${i},9;nil;v1;42;true;v2;2;nil`);
        assert.equal(m.get('x-pairs'), `:method=GET,:path=/,:authority=x,x-number=${i},x-number=9,x-r=2`);
        assert.deepEqual(s.streamInfo.dynamicMetadata.get('ns'), { k: 'v2', n: 42, b: true });
        s.destroy();
      }
      assert.equal(h.errors(), 0);
      h.close();
    });

    it('a prefetched metadata table is the script\'s own: a second get() returns a fresh one', { skip }, () => {
      const h = harness(engine!, `
        function envoy_on_response(h)
          local dm = h:streamInfo():dynamicMetadata()
          local a = dm:get("ns")
          a.k = "changed"
          local b = dm:get("ns")
          h:headers():add("x-k", a.k .. "," .. b.k .. "," .. tostring(b.n) .. "," .. tostring(b.f) .. "," .. tostring(b.nested and b.nested.x))
        end`);
      for (let i = 0; i < 4; i++) {
        const s = h.stream();
        s.decodeHeaders(REQ('1'), true);
        // set by "another filter": primitives, then a nested value (not prefetched, host call)
        s.streamInfo.setDynamicMetadata('ns', 'k', `v${i}`);
        s.streamInfo.setDynamicMetadata('ns', 'n', i);
        s.streamInfo.setDynamicMetadata('ns', 'f', false);
        if (i >= 2) s.streamInfo.setDynamicMetadata('ns', 'nested', { x: 'deep' });
        s.encodeHeaders(RESP(), true);
        assert.equal(s.respHeaders!.get('x-k'), `changed,v${i},${i},false,${i >= 2 ? 'deep' : 'nil'}`);
        // the script's change to its table did not reach the stream
        assert.equal(s.streamInfo.dynamicMetadata.get('ns')!.k, `v${i}`);
        s.destroy();
      }
      assert.equal(h.errors(), 0);
      h.close();
    });

    it('UTF-8 metadata text and binary header bytes cross both ways unchanged', { skip }, () => {
      const h = harness(engine!, `
        function envoy_on_request(h)
          h:streamInfo():dynamicMetadata():set("ns", "text", h:headers():get("x-bytes") .. "\\226\\130\\172")
        end
        function envoy_on_response(h)
          local m = h:streamInfo():dynamicMetadata():get("ns")
          h:headers():add("x-len", tostring(#m.text) .. ":" .. m.text)
        end`);
      // latin1 bytes (not UTF-8: stays bytes) and UTF-8 bytes (becomes text for other filters)
      const cases: [string, string, number[]][] = [
        ['caf\u00e9', 'caf\u00e9\u00e2\u0082\u00ac', [0x63, 0x61, 0x66, 0xe9, 0xe2, 0x82, 0xac]],
        ['caf\u00c3\u00a9', 'caf\u00e9\u20ac', [0x63, 0x61, 0x66, 0xc3, 0xa9, 0xe2, 0x82, 0xac]],
      ];
      for (let i = 0; i < 6; i++) {
        const [hdr, text, bytes] = cases[i % 2]!;
        const s = h.stream();
        s.decodeHeaders(REQ('1', [['x-bytes', hdr]]), true);
        assert.equal(s.streamInfo.dynamicMetadata.get('ns')!.text, text);
        s.encodeHeaders(RESP(), true);
        const got = Buffer.from(s.respHeaders!.get('x-len')!, 'latin1');
        assert.equal(got.toString('latin1').split(':')[0], String(bytes.length));
        assert.deepEqual([...got.subarray(2)], bytes);
        s.destroy();
      }
      assert.equal(h.errors(), 0);
      h.close();
    });

    it('a hook that fails after writing keeps its writes (fail-open), as Envoy applies them at once', { skip }, () => {
      const h = harness(engine!, `
        function envoy_on_request(h)
          h:headers():add("x-before", "1")
          h:streamInfo():dynamicMetadata():set("ns", "k", "v")
          error("boom")
        end`);
      const s = h.stream();
      const m = REQ('1');
      s.decodeHeaders(m, true);
      assert.equal(m.get('x-before'), '1');
      assert.equal(s.streamInfo.dynamicMetadata.get('ns')?.k, 'v');
      assert.equal(h.errors(), 1);
      assert.match(h.logs.script(LEVEL.error)[0]!, /boom/);
      s.destroy();
      h.close();
    });

    it('writes after a yield (body()) and values larger than the shared buffer take the host calls', { skip }, () => {
      const h = harness(engine!, `
        function envoy_on_request(h)
          local big = string.rep("b", 10000)
          h:headers():add("x-big", big)
          h:streamInfo():dynamicMetadata():set("ns", "big", big)
          local body = h:body()
          h:headers():add("x-after", tostring(body:length()))
          h:streamInfo():dynamicMetadata():set("ns", "after", "yes")
          h:headers():add("x-seen", tostring(#h:headers():get("x-big")))
        end`);
      const s = h.stream();
      const m = REQ('1');
      s.decodeHeaders(m, false);
      assert.equal(m.get('x-big')!.length, 10000);
      s.decodeData('hello', true);
      // the headers waited for the body (StopIteration): still modifiable, through host calls
      assert.equal(m.get('x-after'), '5');
      assert.equal(m.get('x-seen'), '10000');
      assert.equal(h.errors(), 0);
      assert.equal((s.streamInfo.dynamicMetadata.get('ns')!.big as string).length, 10000);
      assert.equal(s.streamInfo.dynamicMetadata.get('ns')!.after, 'yes');
      s.destroy();
      h.close();
    });

    it('metadata set by one Lua extension is read by another in the same stream, and both hooks see each other\'s headers', { skip }, () => {
      const a = harness(engine!, `
        function envoy_on_request(h)
          h:headers():add("x-from-a", "1")
          h:streamInfo():dynamicMetadata():set("shared", "a", h:headers():get("x-number"))
        end
        function envoy_on_response(h)
          h:headers():replace("x-order", (h:headers():get("x-order") or "") .. "a")
        end`);
      const b = harness(engine!, `
        function envoy_on_request(h)
          local m = h:streamInfo():dynamicMetadata():get("shared")
          h:headers():add("x-b-saw", tostring(m and m.a) .. "," .. tostring(h:headers():get("x-from-a")))
          h:streamInfo():dynamicMetadata():set("shared", "b", "2")
        end
        function envoy_on_response(h)
          local m = h:streamInfo():dynamicMetadata():get("shared")
          h:headers():replace("x-order", (h:headers():get("x-order") or "") .. "b" .. m.a .. m.b)
        end`);
      for (let i = 0; i < 4; i++) {
        const s = a.stream();
        const fb = b.script.createFilter(s, b.filterStats)!;
        const m = REQ(String(i));
        s.decodeHeaders(m, true);
        fb.decodeHeaders(m, true);
        assert.equal(m.get('x-b-saw'), `${i},1`);
        assert.deepEqual(s.streamInfo.dynamicMetadata.get('shared'), { a: String(i), b: '2' });
        const r = RESP();
        fb.encodeHeaders(r, true);
        s.encodeHeaders(r, true);
        assert.equal(r.get('x-order'), `b${i}2a`);
        fb.onDestroy();
        s.destroy();
      }
      assert.equal(a.errors() + b.errors(), 0);
      a.close();
      b.close();
    });
  });
}
