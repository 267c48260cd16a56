/**
 * Coroutines and userdata are recycled by the engines (a finished hook's coroutine goes back to a
 * pool inside start(); wasm objects come from batches of 32 userdata made by the host). These tests
 * would fail if recycling let one hook see another's objects, or a pooled coroutine were handed
 * out twice (released by the driver after the engine pooled it).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HeaderMap } from '../../src/filters/header-map.ts';
import type { LuaEngine } from '../../src/lua/engine.ts';
import { getLuajitEngine, getWasmoonEngine } from '../../src/lua/engines.ts';
import { LEVEL, harness } from './driver.ts';

const REQ: [string, string][] = [[':method', 'GET'], [':path', '/'], [':authority', 'x'], ['x-n', '0']];
const RESP: [string, string][] = [[':status', '200']];

/** The request headers of request number i (its number in x-n). */
const numbered = (i: number) => HeaderMap.fromPairs(REQ.map(([k, v]) => [k, k === 'x-n' ? String(i) : v]));

type Harness = ReturnType<typeof harness>;
type Stream = ReturnType<Harness['stream']>;

/** The response hook echoes the request's number back (x-echo): it saw its own stream's metadata. */
function assertEcho(s: Stream, i: number): void {
  s.encodeHeaders(HeaderMap.fromPairs(RESP), true);
  assert.equal(s.respHeaders!.get('x-echo'), String(i));
  s.destroy();
}

/** No hook failed, then the state closes. */
function assertCleanAndClose(h: Harness, logsToo = true): void {
  if (logsToo) assert.deepEqual(h.logs.script(LEVEL.error), []);
  assert.equal(h.errors(), 0);
  h.close();
}

const engines: [string, () => Promise<LuaEngine | undefined>][] = [
  ['wasmoon', getWasmoonEngine],
  ['luajit', async () => getLuajitEngine()],
];

for (const [name, get] of engines) {
  describe(`recycled coroutines and objects (${name})`, async () => {
    const engine = await get();
    it('hundreds of hooks: each gets fresh objects, stale ones stay dead, the answer is its own', { skip: engine ? false : 'engine unavailable' }, () => {
      const h = harness(engine!, `
        local seen = setmetatable({}, { __mode = "k" })
        local last, lastHeaders
        function envoy_on_request(rh)
          -- objects from the previous hook (possibly made from the same batch or coroutine) are dead
          if last ~= nil then
            local ok, err = pcall(function() return last:headers() end)
            if ok then error("stale handle is alive") end
            ok = pcall(function() return lastHeaders:get("x-n") end)
            if ok then error("stale headers object is alive") end
          end
          local hs = rh:headers()
          if seen[rh] or seen[hs] then error("object reused across hooks") end
          seen[rh], seen[hs] = true, true
          local si = rh:streamInfo()
          local dm = si:dynamicMetadata()
          dm:set("t", "n", hs:get("x-n"))
          last, lastHeaders = rh, hs
        end
        function envoy_on_response(rh)
          local m = rh:streamInfo():dynamicMetadata():get("t")
          rh:headers():add("x-echo", m.n)
        end`);
      for (let i = 0; i < 300; i++) {
        const s = h.stream();
        s.decodeHeaders(numbered(i), true);
        assertEcho(s, i);
      }
      assertCleanAndClose(h);
    });

    it('recycled object data: stale headers/streamInfo/dynamicMetadata objects stay dead on every method, the new ones see their own stream', { skip: engine ? false : 'engine unavailable' }, () => {
      // the data tables behind these objects are reused by the next hooks (and across a yield)
      const h = harness(engine!, `
        local old
        local function dead(f)
          local ok, err = pcall(f)
          if ok or not tostring(err):find("object used outside of proper scope", 1, true) then
            error("stale object is alive: " .. tostring(err))
          end
        end
        function envoy_on_request(rh)
          if old then
            dead(function() return old.hs:get("x-n") end)
            dead(function() old.hs:add("x-a", "1") end)
            dead(function() for k in pairs(old.hs) do end end)
            dead(function() return old.si:dynamicMetadata() end)
            dead(function() return old.si:protocol() end)
            dead(function() return old.dm:get("t") end)
            dead(function() old.dm:set("t", "k", "v") end)
            dead(function() for k in pairs(old.dm) do end end)
            dead(function() old.hs:logInfo("x") end)
            -- the handle's table itself is recycled too: the old handle, objects made from it and
            -- an iterator kept from the last hook must all stay dead
            dead(function() return old.rh:headers() end)
            dead(function() return old.rh:streamInfo() end)
            dead(function() old.rh:logInfo("x") end)
            dead(function() return old.fs:get("x") end)
            dead(function() return old.meta:get("x") end)
            dead(function() return old.it() end)
          end
          local hs, si = rh:headers(), rh:streamInfo()
          local dm = si:dynamicMetadata()
          if rh:headers() ~= hs or si:dynamicMetadata() ~= dm then error("not cached within the hook") end
          if old and (hs == old.hs or si == old.si or dm == old.dm or rh == old.rh) then error("userdata reused") end
          dm:set("t", "n", hs:get("x-n"))
          old = { hs = hs, si = si, dm = dm, rh = rh, fs = si:filterState(), meta = rh:metadata() }
          if tonumber(hs:get("x-n")) % 3 == 0 then
            local b = rh:body()
            dead(function() return hs:get("x-n") end)
            dead(function() return dm:get("t") end)
            local hs2 = rh:headers()
            if hs2 == hs then error("same object after a yield") end
            hs2:add("x-after", "yes")
          end
          rh:headers():add("x-ok", "1")
          -- leave an iteration unfinished: the next hook's recycled table must not stay "iterating",
          -- and the iterator must be dead there
          old.it = pairs(rh:headers())
          old.it()
        end
        function envoy_on_response(rh)
          local m = rh:streamInfo():dynamicMetadata():get("t")
          rh:headers():add("x-echo", m.n)
        end`);
      for (let i = 0; i < 200; i++) {
        const s = h.stream();
        const end = i % 3 !== 0;
        s.decodeHeaders(numbered(i), end);
        if (!end) {
          s.decodeData(Buffer.from('b'), true);
          assert.equal(s.reqHeaders!.get('x-after'), 'yes');
        }
        assert.equal(s.reqHeaders!.get('x-ok'), '1', `request ${i}: ${h.logs.script(LEVEL.error).join('; ')}`);
        assertEcho(s, i);
      }
      assertCleanAndClose(h);
    });

    it('streams interleaved with suspended hooks never share a recycled coroutine', { skip: engine ? false : 'engine unavailable' }, () => {
      // half the hooks suspend in body(); the others finish and recycle their coroutines meanwhile
      const h = harness(engine!, `
        function envoy_on_request(rh)
          local id = rh:headers():get("x-n")
          if tonumber(id) % 2 == 0 then
            local b = rh:body()
            rh:headers():add("x-got", id .. ":" .. (b and b:getBytes(0, b:length()) or ""))
          else
            rh:headers():add("x-got", id)
          end
        end`);
      const open = [];
      for (let i = 0; i < 100; i++) {
        const s = h.stream();
        s.decodeHeaders(numbered(i), i % 2 === 1);
        open.push({ s, i });
      }
      for (const { s, i } of open) {
        if (i % 2 === 0) s.decodeData(Buffer.from(`body${i}`), true);
        assert.equal(s.reqHeaders!.get('x-got'), i % 2 === 0 ? `${i}:body${i}` : String(i));
        s.destroy();
      }
      assertCleanAndClose(h, false);
    });
  });
}
