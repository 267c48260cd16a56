/**
 * The Lua conformance suite, run once per engine (hono's shared runTest pattern): every case
 * drives the real LuaHttpFilter through the HttpFilter methods with the small manager stand-in of
 * driver.ts. Cases follow envoy-lua-api.md §1.3-1.8 and the scenarios of §1.12. An engine may skip
 * a case only with a reason.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { HeaderMap } from '../../src/filters/header-map.ts';
import { DataStatus, HeadersStatus, TrailersStatus } from '../../src/filters/types.ts';
import type { LuaEngine } from '../../src/lua/engine.ts';
import { FILTER_NAME, LEVEL, harness, tick, type Harness } from './driver.ts';

export interface ConformanceOptions {
  name: string;
  engine: () => Promise<LuaEngine>;
  /** case title → reason it cannot pass on this engine */
  skip?: Record<string, string>;
}

const REQ: [string, string][] = [
  [':method', 'GET'],
  [':path', '/p'],
  [':authority', 'example.com'],
];
const RESP: [string, string][] = [[':status', '200']];

const PARITY = (parse(readFileSync(new URL('../../examples/extensions/parity.yaml', import.meta.url), 'utf8')) as { spec: { lua: { inlineCode: string } } }).spec.lua.inlineCode;

export function runConformance(opts: ConformanceOptions): void {
  let engine: LuaEngine;
  const open: Harness[] = [];
  const make = (code: string, o?: Parameters<typeof harness>[2]): Harness => {
    const h = harness(engine, code, o);
    open.push(h);
    return h;
  };
  const test = (title: string, fn: () => void | Promise<void>) => {
    const reason = opts.skip?.[title];
    if (reason) it(title, { skip: reason }, () => {});
    else it(title, { timeout: 10_000 }, fn);
  };

  describe(`lua conformance (${opts.name})`, () => {
    it('engine loads', async () => {
      engine = await opts.engine();
      assert.ok(engine.name);
    });

    // ------------------------------------------------------------ load and hooks
    test('parity example: x-number → x-parity, one state across requests', () => {
      const h = make(PARITY);
      for (const [n, want] of [['42', 'even'], ['7', 'odd']] as const) {
        const s = h.stream();
        assert.equal(s.decodeHeaders([...REQ, ['x-number', n]], true), HeadersStatus.Continue);
        assert.equal(s.encodeHeaders(RESP, true), HeadersStatus.Continue);
        assert.equal(s.respHeaders!.get('x-parity'), want);
        assert.equal(s.streamInfo.dynamicMetadata.get('envoy.filters.http.lua')?.parity, want);
        s.destroy();
      }
      assert.equal(h.executions(), 4);
      assert.equal(h.errors(), 0);
    });

    test('parity example without x-number: no header; tonumber() of nothing errors as in Envoy', () => {
      const h = make(PARITY);
      const s = h.stream();
      assert.equal(s.decodeHeaders(REQ, true), HeadersStatus.Continue);
      assert.equal(s.encodeHeaders(RESP, true), HeadersStatus.Continue);
      assert.equal(s.respHeaders!.get('x-parity'), undefined);
      // get() of a missing header returns NO value, so tonumber() raises (LuaJIT and 5.4 alike)
      assert.equal(h.errors(), 1);
      assert.match(h.logs.script(LEVEL.error)[0]!, /bad argument #1 to 'tonumber'/);
    });

    test('syntax error is a load error with the line number', () => {
      assert.throws(
        () => make('function envoy_on_request(request_handle)\n  local x = 1\n  bad\nend\n'),
        (e: Error) => /^script load error: \[string "function envoy_on_request\(request_handle\)\.\.\."\]:4: /.test(e.message),
      );
    });

    test('top-level runtime error is a load error', () => {
      assert.throws(() => make('local t = nil\nlocal x = t.y\n'), /script load error: \[string "local t = nil\.\.\."\]:2: attempt to index/);
    });

    test('a script without hooks makes no filter and counts nothing', () => {
      const h = make('x = 1');
      assert.equal(h.script.hooks, 0);
      assert.equal(h.script.createFilter(h.stream as never, h.filterStats), null);
    });

    test('only envoy_on_response: the request passes without execution', () => {
      const h = make('function envoy_on_response(h) h:headers():add("r", "1") end');
      const s = h.stream();
      assert.equal(s.decodeHeaders(REQ, true), HeadersStatus.Continue);
      s.encodeHeaders(RESP, true);
      assert.equal(s.respHeaders!.get('r'), '1');
      assert.equal(h.executions(), 1);
    });

    test('top-level state persists across requests; hooks are looked up once', () => {
      const h = make('local n = 0\nfunction envoy_on_request(h) n = n + 1 h:headers():add("n", n) envoy_on_request = nil end');
      for (let i = 1; i <= 3; i++) {
        const s = h.stream();
        s.decodeHeaders(REQ, true);
        assert.equal(s.reqHeaders!.get('n'), String(i));
      }
    });

    // ------------------------------------------------------------ headers
    test('headers: get joins with ",", getAtIndex is 0-based, getNumValues, lower-casing', () => {
      const h = make(`function envoy_on_request(h)
        local hd = h:headers()
        h:logInfo(hd:get("X-Multi"))
        h:logInfo(hd:getAtIndex("x-multi", 0) .. "|" .. hd:getAtIndex("x-multi", 1) .. "|" .. tostring(hd:getAtIndex("x-multi", 2)) .. "|" .. tostring(hd:getAtIndex("x-multi", -1)))
        h:logInfo(hd:getNumValues("x-multi") .. "," .. hd:getNumValues("nope"))
        h:logInfo(select("#", hd:get("nope")))
        hd:add("HELLO", "world")
        hd:replace("x-multi", "one")
        hd:replace("x-new", "v")
        hd:remove("x-gone")
        hd:add("num", 5)
      end`);
      const s = h.stream();
      s.decodeHeaders([...REQ, ['x-multi', 'foo'], ['x-multi', 'bar'], ['x-gone', '1']], true);
      assert.deepEqual(h.logs.script(LEVEL.info), ['foo,bar', 'foo|bar|nil|nil', '2,0', '0']);
      assert.equal(s.reqHeaders!.get('hello'), 'world');
      assert.deepEqual(s.reqHeaders!.getAll('x-multi'), ['one']);
      assert.equal(s.reqHeaders!.get('x-new'), 'v');
      assert.equal(s.reqHeaders!.get('x-gone'), undefined);
      assert.equal(s.reqHeaders!.get('num'), '5');
      assert.equal(h.errors(), 0);
    });

    test('headers: iteration in map order; modify while iterating and second iterator fail', () => {
      const h = make(`function envoy_on_request(h)
        local out = {}
        for k, v in pairs(h:headers()) do out[#out + 1] = k .. "=" .. v end
        h:logInfo(table.concat(out, ";"))
        local ok, e = pcall(function() for k in pairs(h:headers()) do h:headers():add("x", "y") end end)
        h:logInfo(e)
      end
      function envoy_on_response(h)
        for k in pairs(h:headers()) do
          for k2 in pairs(h:headers()) do end
        end
      end`);
      const s = h.stream();
      s.decodeHeaders([...REQ, ['a', '1'], ['a', '2']], true);
      const logs = h.logs.script(LEVEL.info);
      assert.equal(logs[0], ':method=GET;:path=/p;:authority=example.com;a=1;a=2');
      assert.match(logs[1]!, /:\d+: header map cannot be modified while iterating$/);
      s.encodeHeaders(RESP, true);
      assert.match(h.logs.script(LEVEL.error)[0]!, /cannot create a second iterator before completing the first$/);
    });

    test('headers: can no longer be modified after they were continued', () => {
      const h = make(`function envoy_on_request(h)
        for chunk in h:bodyChunks() do
          h:headers():add("late", "1")
        end
      end`);
      const s = h.stream();
      assert.equal(s.decodeHeaders(REQ, false), HeadersStatus.Continue);
      assert.equal(s.decodeData('abc', true).status, DataStatus.Continue);
      assert.match(h.logs.script(LEVEL.error)[0]!, /\]:3: header map can no longer be modified$/);
      assert.equal(h.errors(), 1);
    });

    test('headers: a headers object fetched before a yield is dead after it', () => {
      const h = make(`function envoy_on_request(h)
        local hd = h:headers()
        h:body()
        hd:get("a")
      end`);
      const s = h.stream();
      assert.equal(s.decodeHeaders(REQ, false), HeadersStatus.StopIteration);
      s.decodeData('x', true);
      assert.match(h.logs.script(LEVEL.error)[0]!, /object used outside of proper scope$/);
    });

    test('headers: an iterator used across a yield is dead (HeadersIteratorAcrossYield)', () => {
      const h = make(`function envoy_on_request(h)
        local it = pairs(h:headers())
        h:body()
        it()
      end`);
      const s = h.stream();
      s.decodeHeaders(REQ, false);
      s.decodeData('x', true);
      assert.match(h.logs.script(LEVEL.error)[0]!, /object used outside of proper scope$/);
    });

    test('headers: argument errors use the auxlib format', () => {
      const h = make('function envoy_on_request(h) h:headers():add("k", nil) end');
      h.stream().decodeHeaders(REQ, true);
      assert.match(h.logs.script(LEVEL.error)[0]!, /bad argument #2 to 'add' \(string expected, got nil\)$/);
    });

    test('setHttp1ReasonPhrase records the phrase', () => {
      const h = make('function envoy_on_response(h) h:headers():setHttp1ReasonPhrase("Slow Down") end');
      const s = h.stream();
      s.decodeHeaders(REQ, true);
      s.encodeHeaders([[':status', '400']], true);
      assert.equal(s.streamInfo.http1ReasonPhrase, 'Slow Down');
    });

    test('request header mutation clears the route cache; handle:clearRouteCache()', () => {
      const h = make('function envoy_on_request(h) h:headers():replace(":path", "/other") h:clearRouteCache() end function envoy_on_response(h) h:clearRouteCache() end');
      const s = h.stream();
      s.decodeHeaders(REQ, true);
      assert.equal(s.clearRouteCacheCalls, 2);
      s.encodeHeaders(RESP, true);
      assert.equal(s.clearRouteCacheCalls, 2);
    });

    // ------------------------------------------------------------ body
    test('body(): StopIteration, StopIterationAndBuffer, resumes with the whole body', () => {
      const h = make(`function envoy_on_request(h)
        local b = h:body()
        h:logInfo(b:length())
        h:logInfo(b:getBytes(0, b:length()))
        h:headers():add("seen", tostring(b:length()))
      end`);
      const s = h.stream();
      assert.equal(s.decodeHeaders(REQ, false), HeadersStatus.StopIteration);
      assert.equal(s.decodeData('hello').status, DataStatus.StopIterationAndBuffer);
      assert.equal(s.decodeData('world', true).status, DataStatus.Continue);
      assert.deepEqual(h.logs.script(LEVEL.info), ['10', 'helloworld']);
      // headers stay modifiable while body() waited (StopIteration)
      assert.equal(s.reqHeaders!.get('seen'), '10');
      assert.equal(h.errors(), 0);
    });

    test('body(): completes on trailers', () => {
      const h = make('function envoy_on_request(h) h:logInfo(h:body():length()) h:logInfo(h:trailers():get("t")) end');
      const s = h.stream();
      s.decodeHeaders(REQ, false);
      assert.equal(s.decodeData('12345').status, DataStatus.StopIterationAndBuffer);
      assert.equal(s.decodeTrailers([['t', 'v']]), TrailersStatus.Continue);
      assert.deepEqual(h.logs.script(LEVEL.info), ['5', 'v']);
    });

    test('body(): nothing on a headers-only request; body(true) wraps an empty buffer', () => {
      const h = make(`function envoy_on_request(h)
        h:logInfo(select("#", h:body()))
        local b = h:body(true)
        h:logInfo(b:length())
        b:setBytes("new")
      end`);
      const s = h.stream();
      assert.equal(s.decodeHeaders(REQ, true), HeadersStatus.Continue);
      assert.deepEqual(h.logs.script(LEVEL.info), ['0', '0']);
      assert.equal(s.decBuf?.toString(), 'new');
      assert.equal(s.reqHeaders!.get('content-length'), '3');
    });

    test('body(): argument must be a boolean', () => {
      const h = make('function envoy_on_request(h) h:body("yes") end');
      h.stream().decodeHeaders(REQ, true);
      assert.match(h.logs.script(LEVEL.error)[0]!, /bad argument #1 to 'body' \(boolean expected, got string\)$/);
    });

    test('buffer: setBytes rewrites binary-safe, returns the length, fixes content-length; getBytes range errors', () => {
      const h = make(`function envoy_on_response(h)
        local b = h:body()
        h:logInfo(b:setBytes("\\0\\x47zz"))
        h:logInfo(string.byte(b:getBytes(0, 1)))
        local ok, e = pcall(b.getBytes, b, 2, 5)
        h:logInfo(e)
      end`);
      const s = h.stream();
      s.decodeHeaders(REQ, true);
      assert.equal(s.encodeHeaders([...RESP, ['content-length', '7']], false), HeadersStatus.StopIteration);
      const r = s.encodeData('1234567', true);
      assert.equal(r.status, DataStatus.Continue);
      assert.deepEqual([...r.data.toBuffer()], [0, 0x47, 0x7a, 0x7a]);
      assert.equal(s.respHeaders!.get('content-length'), '4');
      const logs = h.logs.script(LEVEL.info);
      assert.equal(logs[0], '4');
      assert.equal(logs[1], '0');
      assert.match(logs[2]!, /index\/length must be >= 0 and \(index \+ length\) must be <= buffer size$/);
    });

    test('response body(true) without an upstream body adds one (RewriteResponseBufferWithoutUpstreamBody)', () => {
      const h = make('function envoy_on_response(h) h:body(true):setBytes("ok") end');
      const s = h.stream();
      s.decodeHeaders(REQ, true);
      s.encodeHeaders(RESP, true);
      assert.equal(s.encBuf?.toString(), 'ok');
      assert.equal(s.respHeaders!.get('content-length'), '2');
    });

    // ------------------------------------------------------------ bodyChunks / trailers
    test('bodyChunks(): streams every frame, ends at end of stream or trailers', () => {
      const h = make(`function envoy_on_request(h)
        for chunk in h:bodyChunks() do h:logInfo(chunk:length()) end
        h:logInfo("done")
      end`);
      const s = h.stream();
      assert.equal(s.decodeHeaders(REQ, false), HeadersStatus.Continue);
      assert.equal(s.decodeData('ab').status, DataStatus.Continue);
      assert.equal(s.decodeData('cde').status, DataStatus.Continue);
      assert.equal(s.decodeTrailers([['t', '1']]), TrailersStatus.Continue);
      assert.deepEqual(h.logs.script(LEVEL.info), ['2', '3', 'done']);
    });

    test('bodyChunks(): setBytes rewrites a chunk', () => {
      const h = make('function envoy_on_response(h) for c in h:bodyChunks() do c:setBytes(string.upper(c:getBytes(0, c:length()))) end end');
      const s = h.stream();
      s.decodeHeaders(REQ, true);
      s.encodeHeaders(RESP, false);
      assert.equal(s.encodeData('abc').data.toString(), 'ABC');
      assert.equal(s.encodeData('de', true).data.toString(), 'DE');
    });

    test('a chunk kept from an earlier iteration is dead (BodyChunkOutsideOfLoop)', () => {
      const h = make(`function envoy_on_request(h)
        local last
        for c in h:bodyChunks() do
          if last then last:length() end
          last = c
        end
      end`);
      const s = h.stream();
      s.decodeHeaders(REQ, false);
      assert.equal(s.decodeData('a').status, DataStatus.Continue);
      assert.equal(s.decodeData('b').status, DataStatus.Continue);
      assert.equal(s.decodeData('c', true).status, DataStatus.Continue);
      assert.equal(h.errors(), 1);
      assert.match(h.logs.script(LEVEL.error)[0]!, /object used outside of proper scope$/);
    });

    test('body/bodyChunks ordering errors', () => {
      const cases: [string, RegExp][] = [
        ['h:body() for c in h:bodyChunks() do end', /cannot call bodyChunks after body processing has begun$/],
        ['for c in h:bodyChunks() do h:body() end', /cannot call body\(\) after body streaming has started$/],
        ['h:trailers() h:body()', /cannot call body\(\) after body has been streamed$/],
        ['for c in h:bodyChunks() do h:respond({[":status"] = "200"}, "x") end', /respond\(\) cannot be called if headers have been continued$/],
      ];
      for (const [body, re] of cases) {
        const h = make(`function envoy_on_request(h) ${body} end`);
        const s = h.stream();
        s.decodeHeaders(REQ, false);
        s.decodeData('abc');
        s.decodeTrailers([['t', '1']]);
        assert.match(h.logs.script(LEVEL.error)[0] ?? '(no error)', re, body);
      }
    });

    test('trailers(): nothing without trailers, the trailers otherwise; data passes meanwhile', () => {
      const h = make('function envoy_on_request(h) local t = h:trailers() h:logInfo(t and t:get("foo") or "none") end');
      const s = h.stream();
      s.decodeHeaders(REQ, false);
      assert.equal(s.decodeData('x').status, DataStatus.Continue);
      assert.equal(s.decodeTrailers([['foo', 'bar']]), TrailersStatus.Continue);
      const s2 = h.stream();
      s2.decodeHeaders(REQ, false);
      assert.equal(s2.decodeData('x', true).status, DataStatus.Continue);
      assert.deepEqual(h.logs.script(LEVEL.info), ['bar', 'none']);
    });

    // ------------------------------------------------------------ errors
    test('runtime error: logged at error level, counted, the stream continues (fail-open)', () => {
      const h = make('function envoy_on_request(h)\n  local foo = nil\n  foo.bar = 1\nend');
      const s = h.stream();
      assert.equal(s.decodeHeaders(REQ, false), HeadersStatus.Continue);
      assert.equal(s.decodeData('x').status, DataStatus.Continue);
      assert.equal(s.decodeTrailers([['a', 'b']]), TrailersStatus.Continue);
      assert.equal(h.errors(), 1);
      assert.match(h.logs.script(LEVEL.error)[0]!, /^\[string "function envoy_on_request\(h\)\.\.\."\]:3: attempt to index/);
      assert.equal(s.replies.length, 0);
    });

    test('a request-path error does not stop envoy_on_response (Stats: errors=2 executions=2)', () => {
      const h = make('function envoy_on_request(h) error("a") end function envoy_on_response(h) error("b") end');
      const s = h.stream();
      s.decodeHeaders(REQ, true);
      s.encodeHeaders(RESP, true);
      assert.equal(h.errors(), 2);
      assert.equal(h.executions(), 2);
    });

    test('fail-closed (opt-in): a runtime error answers 500', () => {
      const h = make('function envoy_on_request(h) error("boom") end', { failClosed: true });
      const s = h.stream();
      assert.equal(s.decodeHeaders(REQ, true), HeadersStatus.StopIteration);
      assert.equal(s.replies[0]?.status, 500);
      assert.equal(s.replies[0]?.options?.details, 'lua_script_error');
    });

    test('a bare coroutine.yield() is an unexpected yield; script-made coroutines work', () => {
      const h = make(`function envoy_on_request(h)
        local co = coroutine.wrap(function() coroutine.yield(1) coroutine.yield(2) end)
        h:logInfo(co() + co())
        coroutine.yield()
      end`);
      const s = h.stream();
      assert.equal(s.decodeHeaders(REQ, true), HeadersStatus.Continue);
      assert.deepEqual(h.logs.script(LEVEL.info), ['3']);
      assert.deepEqual(h.logs.script(LEVEL.error), ['script performed an unexpected yield']);
    });

    test('a handle kept in a global is dead in the next request (ThreadEnvironments)', () => {
      const h = make('function envoy_on_request(h) if saved then saved:headers() end saved = h end');
      h.stream().decodeHeaders(REQ, true);
      h.stream().decodeHeaders(REQ, true);
      assert.equal(h.errors(), 1);
      assert.match(h.logs.script(LEVEL.error)[0]!, /object used outside of proper scope$/);
    });

    test('errors inside a pairs() loop are caught (ErrorDuringCallback)', () => {
      const h = make('function envoy_on_request(h) for k, v in pairs(h:headers()) do error("in loop") end end');
      h.stream().decodeHeaders(REQ, true);
      assert.match(h.logs.script(LEVEL.error)[0]!, /in loop$/);
    });

    // ------------------------------------------------------------ budget, memory, sandbox
    test('instruction budget: while true do end cannot hang the worker', () => {
      const h = make('function envoy_on_request(h) while true do end end', { instructionBudget: 2_000_000 });
      const t0 = Date.now();
      const s = h.stream();
      assert.equal(s.decodeHeaders(REQ, true), HeadersStatus.Continue);
      assert.ok(Date.now() - t0 < 5000);
      assert.match(h.logs.script(LEVEL.error)[0]!, /instruction budget exceeded/);
      // the state keeps serving
      const s2 = h.stream();
      assert.equal(s2.decodeHeaders(REQ, true), HeadersStatus.Continue);
      assert.equal(h.errors(), 2);
    });

    test('instruction budget: pcall cannot swallow it for good', () => {
      const h = make('function envoy_on_request(h) while true do pcall(function() while true do end end) end end', { instructionBudget: 1_000_000 });
      h.stream().decodeHeaders(REQ, true);
      assert.equal(h.errors(), 1);
    });

    // LuaJIT compiles meshext's own prelude; the script's code and what it loads must stay
    // interpreted, where the count hook runs: none of these loops may hang the worker.
    for (const [what, body] of [
      ['a loop calling prelude methods', 'while true do h:headers():get("x") h:streamInfo():dynamicMetadata() end'],
      ['a loop made by load()', 'load("while true do end")()'],
      ['a loop made by loadstring()', 'loadstring("local n = 0 while true do n = n + 1 end")()'],
      ['a loop in a function defined inside a loaded chunk', 'load("return function() local x = 0 for i = 1, 1e12 do x = x + i end end")()()'],
      ['a loop in a coroutine', 'coroutine.wrap(function() while true do end end)()'],
      ['a loop in a __pairs the prelude calls', 'for k in pairs(setmetatable({}, { __pairs = function() while true do end end })) do end'],
      ['a loop in an __index the prelude reaches', 'h:httpCall("cluster", setmetatable({}, { __index = function() while true do end end }), "", 1000)'],
    ] as const) {
      test(`instruction budget: ${what} is stopped`, () => {
        const h = make(`function envoy_on_request(h) ${body} end`, { instructionBudget: 1_000_000 });
        const t0 = Date.now();
        assert.equal(h.stream().decodeHeaders(REQ, true), HeadersStatus.Continue);
        assert.ok(Date.now() - t0 < 5000);
        assert.equal(h.errors(), 1);
        assert.match(h.logs.script(LEVEL.error)[0]!, /instruction budget exceeded/);
      });
    }

    test('instruction budget applies to the top-level chunk', () => {
      assert.throws(() => make('while true do end', { instructionBudget: 1_000_000 }), /script load error: .*instruction budget exceeded/);
    });

    test('memory cap: an allocation bomb fails the hook, the state keeps serving', () => {
      const h = make(`local keep = {}
        function envoy_on_request(h)
          if h:headers():get("bomb") then
            local t = {} for i = 1, 1e8 do t[i] = string.rep("x", 64) .. i end keep = t
          end
          h:headers():add("ok", "1")
        end`, { memoryLimitBytes: 8 << 20 });
      const s = h.stream();
      s.decodeHeaders([...REQ, ['bomb', '1']], true);
      assert.match(h.logs.script(LEVEL.error)[0]!, /not enough memory/);
      assert.ok(h.script.state.memoryUsed() <= 8 << 20);
      const s2 = h.stream();
      s2.decodeHeaders(REQ, true);
      assert.equal(s2.reqHeaders!.get('ok'), '1');
    });

    test('sandbox: no os.execute/io/package/debug/ffi/dofile/loadfile/require by default', () => {
      const h = make(`function envoy_on_request(h)
        h:logInfo(table.concat({type(io), type(os.execute), type(os.exit), type(os.getenv), type(package), type(debug), type(dofile), type(loadfile), type(require), type(ffi)}, ","))
        h:logInfo(type(os.time()) .. "," .. type(os.date()) .. "," .. type(string.format))
        h:logInfo(tostring(load(string.dump(function() end))))
      end`);
      h.stream().decodeHeaders(REQ, true);
      const logs = h.logs.script(LEVEL.info);
      assert.equal(logs[0], 'nil,nil,nil,nil,nil,nil,nil,nil,nil,nil');
      assert.equal(logs[1], 'number,string,function');
      assert.equal(logs[2], 'nil');
    });

    test('sandbox: no finalizers (they would run outside the budget): no newproxy, no __gc, no handle metatables', () => {
      const h = make(`function envoy_on_request(h)
        h:logInfo(type(newproxy) .. "," .. tostring(getmetatable(h)) .. "," .. tostring(getmetatable(h:headers())) .. "," .. type(getmetatable("")))
        local ok, err = pcall(setmetatable, {}, { __gc = function() while true do end end })
        h:logInfo(tostring(ok) .. ":" .. tostring(err))
        h:logInfo(type(setmetatable({}, { __index = {} })))
        collectgarbage()
      end`, { instructionBudget: 1_000_000 });
      h.stream().decodeHeaders(REQ, true);
      const logs = h.logs.script(LEVEL.info);
      assert.equal(logs[0], 'nil,nil,nil,table');
      assert.match(logs[1]!, /^false:.*__gc metamethods are not allowed/);
      assert.equal(logs[2], 'table');
      assert.equal(h.errors(), 0);
    });

    test('sandbox off (allowUnsafeLibs): the standard libraries are there', () => {
      const h = make('function envoy_on_request(h) h:logInfo(type(io) .. "," .. type(os.getenv) .. "," .. type(require)) end', { allowUnsafeLibs: true });
      h.stream().decodeHeaders(REQ, true);
      assert.deepEqual(h.logs.script(LEVEL.info), ['table,function,function']);
    });

    // ------------------------------------------------------------ dialect
    test('LuaJIT dialect: integer-valued numbers print without .0, bit, unpack, table.pack, __pairs', () => {
      const h = make(`function envoy_on_request(h)
        local b = h:body()
        h:logInfo(tostring(b:length()) .. "," .. tostring(h:headers():getNumValues(":path")) .. "," .. tostring(h:timestamp() % 1 == 0))
        h:logInfo(bit.band(5, 3) .. "," .. bit.bor(1, 2) .. "," .. bit.tohex(255) .. "," .. bit.lshift(1, 4) .. "," .. bit.bxor(-1, 0))
        h:logInfo(select("#", unpack({1, 2, 3})) .. "," .. table.pack(1, 2).n)
        local t = setmetatable({}, { __pairs = function() return function(_, k) if not k then return 1, "x" end end, nil, nil end })
        for k, v in pairs(t) do h:logInfo(k .. v) end
      end`);
      const s = h.stream();
      s.decodeHeaders(REQ, false);
      s.decodeData('0123456789', true);
      assert.deepEqual(h.logs.script(LEVEL.info), ['10,1,true', '1,3,000000ff,16,-1', '3,2', '1x']);
    });

    // ------------------------------------------------------------ httpCall
    test('httpCall synchronous: pauses the stream, returns headers and a binary-safe body', async () => {
      const h = make(`function envoy_on_request(h)
        local headers, body = h:httpCall("cluster", {[":method"] = "POST", [":path"] = "/auth", [":authority"] = "auth", ["set-cookie"] = {"a=1", "b=2"}}, "hello world", 5000)
        h:headers():add("status", headers[":status"])
        h:headers():add("byte5", tostring(string.byte(body, 5)))
        h:headers():add("len", tostring(#body))
      end`);
      h.clusters.handler = async () => ({ headers: HeaderMap.fromPairs([[':status', '200'], ['x', 'y']]), body: Buffer.from([1, 2, 3, 4, 0, 5]), trailers: new HeaderMap() });
      const s = h.stream();
      assert.equal(s.decodeHeaders(REQ, false), HeadersStatus.StopIteration);
      assert.equal(s.decodeData('abc').status, DataStatus.StopIterationAndWatermark);
      assert.equal(s.decodeTrailers([['t', '1']]), TrailersStatus.StopIteration);
      const req = h.clusters.requests[0]!;
      assert.equal(req.cluster, 'cluster');
      assert.deepEqual(req.headers.getAll('set-cookie'), ['a=1', 'b=2']);
      assert.equal(req.headers.get('content-length'), '11');
      assert.equal(req.timeoutMs, 5000);
      await tick(5);
      assert.equal(s.continueDecodingCalls, 1);
      assert.equal(s.reqHeaders!.get('status'), '200');
      assert.equal(s.reqHeaders!.get('byte5'), '0');
      assert.equal(s.reqHeaders!.get('len'), '6');
      assert.equal(h.errors(), 0);
    });

    test('httpCall: repeated headers, no body means nil and no content-length', async () => {
      const h = make(`function envoy_on_request(h)
        local hd, body = h:httpCall("cluster", {[":method"] = "GET", [":path"] = "/", [":authority"] = "a"}, nil, {return_duplicate_headers = true})
        h:logInfo(type(hd["x"]) .. "," .. hd["x"][1] .. hd["x"][2] .. "," .. tostring(body))
        local hd2 = h:httpCall("cluster", {[":method"] = "GET", [":path"] = "/", [":authority"] = "a"}, nil, 0)
        h:logInfo(hd2["x"])
      end`);
      h.clusters.handler = async () => ({ headers: HeaderMap.fromPairs([[':status', '200'], ['x', 'v1'], ['x', 'v2']]), body: Buffer.alloc(0), trailers: new HeaderMap() });
      const s = h.stream();
      s.decodeHeaders(REQ, true);
      await tick(5);
      assert.deepEqual(h.logs.script(LEVEL.info), ['table,v1v2,nil', 'v2']);
      assert.equal(h.clusters.requests[0]!.headers.get('content-length'), undefined);
      assert.equal(s.continueDecodingCalls, 1);
    });

    test('httpCall failure reaches the script as 503 "upstream failure", not as an error', async () => {
      const h = make(`function envoy_on_request(h)
        local hd, body = h:httpCall("cluster", {[":method"] = "GET", [":path"] = "/", [":authority"] = "a"}, "", 10)
        h:logInfo(hd[":status"] .. " " .. body)
      end`);
      h.clusters.handler = async () => { throw new Error('connect refused'); };
      h.stream().decodeHeaders(REQ, true);
      await tick(5);
      assert.deepEqual(h.logs.script(LEVEL.info), ['503 upstream failure']);
      assert.equal(h.errors(), 0);
    });

    test('httpCall asynchronous: fire-and-forget, nothing pauses', () => {
      const h = make(`function envoy_on_request(h)
        h:httpCall("cluster", {[":method"] = "GET", [":path"] = "/a", [":authority"] = "a"}, "x", 0, true)
        h:httpCall("cluster", {[":method"] = "GET", [":path"] = "/b", [":authority"] = "a"}, "x", {asynchronous = true})
        h:httpCall("cluster", {[":method"] = "GET", [":path"] = "/c", [":authority"] = "a"}, nil, 0, false)
      end`);
      const s = h.stream();
      assert.equal(s.decodeHeaders(REQ, true), HeadersStatus.StopIteration); // the third one is synchronous
      assert.deepEqual(h.clusters.requests.map((r) => r.headers.get(':path')), ['/a', '/b', '/c']);
    });

    test('httpCall argument errors have Envoy\'s texts', () => {
      const cases: [string, RegExp][] = [
        ['h:httpCall("nope", {[":method"]="GET",[":path"]="/",[":authority"]="a"}, nil, 0)', /http call cluster invalid. Must be configured$/],
        ['h:httpCall("cluster", {[":method"]="GET"}, nil, 0)', /http call headers must include ':path', ':method', and ':authority'$/],
        ['h:httpCall("cluster", {[":method"]="GET",[":path"]="/",[":authority"]="a"}, nil, -1)', /http call timeout must be >= 0$/],
        ['h:httpCall("cluster", {[":method"]="GET",[":path"]="/",[":authority"]="a"}, nil, {timeout_ms = -1})', /http call timeout must be >= 0$/],
        ['h:httpCall("cluster", {[":method"]="GET",[":path"]="/",[":authority"]="a"}, nil, {invalid_option = 1})', /"invalid_option" is not valid key for httpCall\(\) options$/],
        ['h:httpCall("cluster", {[":method"]="GET",[":path"]="/",[":authority"]="a"}, nil, 0, "yes")', /http call asynchronous flag must be 'true', 'false', or empty$/],
      ];
      for (const [call, re] of cases) {
        const h = make(`function envoy_on_request(h) ${call} end`);
        assert.equal(h.stream().decodeHeaders(REQ, true), HeadersStatus.Continue);
        assert.match(h.logs.script(LEVEL.error)[0] ?? '(none)', re, call);
      }
    });

    test('stream reset during httpCall: the call is cancelled and the script never resumes', async () => {
      const h = make(`function envoy_on_request(h)
        h:httpCall("cluster", {[":method"]="GET",[":path"]="/",[":authority"]="a"}, nil, 0)
        h:logInfo("resumed")
      end`);
      h.clusters.handler = () => new Promise(() => {});
      const s = h.stream();
      s.decodeHeaders(REQ, true);
      s.destroy();
      await tick(5);
      assert.equal(h.clusters.cancelled, 1);
      assert.deepEqual(h.logs.script(LEVEL.info), []);
      assert.equal(h.errors(), 0);
    });

    test('httpCall then respond() (HttpCallImmediateResponse)', async () => {
      const h = make(`function envoy_on_request(h)
        local hd = h:httpCall("cluster", {[":method"]="GET",[":path"]="/",[":authority"]="a"}, nil, 0)
        if hd[":status"] == "403" then h:respond({[":status"] = "403"}, "denied") end
      end`);
      h.clusters.handler = async () => ({ headers: HeaderMap.fromPairs([[':status', '403']]), body: Buffer.alloc(0), trailers: new HeaderMap() });
      const s = h.stream();
      assert.equal(s.decodeHeaders(REQ, true), HeadersStatus.StopIteration);
      await tick(5);
      assert.equal(s.replies[0]?.status, 403);
      assert.equal(s.replies[0]?.body, 'denied');
      assert.equal(s.continueDecodingCalls, 0);
    });

    // ------------------------------------------------------------ respond
    test('respond(): local reply with details lua_response and extra headers; code after it does not run', () => {
      const h = make(`function envoy_on_request(h)
        h:respond({[":status"] = "503", ["fake"] = "fakeValue", ["multi"] = {"a", "b"}}, "nope")
        h:logInfo("after")
      end`);
      const s = h.stream();
      assert.equal(s.decodeHeaders(REQ, false), HeadersStatus.StopIteration);
      assert.equal(s.decodeData('x').status, DataStatus.StopIterationNoBuffer);
      const r = s.replies[0]!;
      assert.equal(r.status, 503);
      assert.equal(r.body, 'nope');
      assert.equal(r.options?.details, 'lua_response');
      assert.deepEqual([...(r.options?.headers ?? [])].sort((a, b) => a[0].localeCompare(b[0])), [['fake', 'fakeValue'], ['multi', 'a'], ['multi', 'b']]);
      assert.deepEqual(h.logs.script(LEVEL.info), []);
    });

    test('respond(): 2000 times without Lua memory growth (#3570)', () => {
      const h = make('function envoy_on_request(h) h:respond({[":status"] = "200"}, "x") end');
      for (let i = 0; i < 200; i++) h.stream().decodeHeaders(REQ, true);
      h.script.state.collect();
      const base = h.script.state.memoryUsed();
      for (let i = 0; i < 2000; i++) {
        const s = h.stream();
        s.decodeHeaders(REQ, true);
        s.destroy();
      }
      h.script.state.collect();
      assert.ok(h.script.state.memoryUsed() < base + 64 * 1024, `${h.script.state.memoryUsed()} vs ${base}`);
    });

    test('respond(): bad :status, response path', () => {
      const h = make('function envoy_on_request(h) h:respond({[":status"] = "100"}, "x") end function envoy_on_response(h) h:respond({[":status"] = "200"}, "x") end');
      const s = h.stream();
      s.decodeHeaders(REQ, true);
      s.encodeHeaders(RESP, true);
      const errs = h.logs.script(LEVEL.error);
      assert.match(errs[0]!, /:status must be between 200-599$/);
      assert.match(errs[1]!, /respond not currently supported in the response path$/);
    });

    // ------------------------------------------------------------ metadata
    test('metadata(): route filter_metadata under the filter name, canonical fallback, none without route', () => {
      const code = 'local function show(h, ...) h:logInfo(select("#", ...) == 0 and "nil" or tostring((...))) end function envoy_on_request(h) show(h, h:metadata():get("foo")) show(h, h:route():metadata():get("foo")) show(h, h:filterContext():get("foo")) show(h, h:virtualHost():metadata():get("foo")) end';
      const h = make(code);
      const s = h.stream();
      s.routeInfo = { name: 'r', cluster: 'c', filterMetadata: { [FILTER_NAME]: { foo: 'bar', list: [1, 2] } } };
      s.decodeHeaders(REQ, true);
      const s2 = h.stream();
      s2.routeInfo = { name: 'r', cluster: 'c', filterMetadata: { 'envoy.filters.http.lua': { foo: 'canonical' } } };
      s2.decodeHeaders(REQ, true);
      h.stream().decodeHeaders(REQ, true);
      assert.deepEqual(h.logs.script(LEVEL.info), ['bar', 'bar', 'nil', 'nil', 'canonical', 'nil', 'nil', 'nil', 'nil', 'nil', 'nil', 'nil']);
    });

    test('metadata(): pairs and nested values', () => {
      const h = make('function envoy_on_request(h) local n = 0 for k, v in pairs(h:metadata()) do n = n + 1 end h:logInfo(n .. "," .. h:metadata():get("list")[2] .. "," .. h:metadata():get("s").x) end');
      const s = h.stream();
      s.routeInfo = { name: 'r', cluster: 'c', filterMetadata: { [FILTER_NAME]: { a: true, list: [1, 2], s: { x: 'y' } } } };
      s.decodeHeaders(REQ, true);
      assert.deepEqual(h.logs.script(LEVEL.info), ['3,2,y']);
    });

    test('dynamicMetadata: set/get/pairs, Envoy conversions and errors', () => {
      const h = make(`function envoy_on_request(h)
        local dm = h:streamInfo():dynamicMetadata()
        dm:set("envoy.lb", "foo", "bar")
        dm:set("envoy.lb", "complex", {x = "abcd", y = 1234, list = {"a", "b"}})
        dm:set("envoy.lb", "null", nil)
        h:logInfo(dm:get("envoy.lb").foo .. "," .. dm:get("envoy.lb").complex.y .. "," .. dm:get("envoy.lb").complex.list[2])
        h:logInfo(select("#", dm:get("missing")))
        h:logInfo(type(dm))
        local n = 0
        for ns, t in pairs(dm) do n = n + 1 end
        h:logInfo(n)
        h:logInfo(select(2, pcall(dm.set, dm, "ns", "k", {1, a = 2})))
        h:logInfo(select(2, pcall(dm.set, dm, "ns", "k", print)))
        h:logInfo(select(2, pcall(function() for k in pairs(dm) do dm:set("a", "b", "c") end end)))
      end`);
      const s = h.stream();
      s.streamInfo.setDynamicMetadata('other', 'k', 'v');
      s.decodeHeaders(REQ, true);
      const logs = h.logs.script(LEVEL.info);
      assert.equal(logs[0], 'bar,1234,b');
      assert.equal(logs[1], '0');
      assert.equal(logs[2], 'userdata');
      assert.equal(logs[3], '2');
      assert.match(logs[4]!, /unexpected type number in table key \(only string keys are supported\)$/);
      assert.match(logs[5]!, /unexpected type 'function' in dynamicMetadata$/);
      assert.match(logs[6]!, /dynamic metadata map cannot be modified while iterating$/);
      assert.deepEqual(s.streamInfo.dynamicMetadata.get('envoy.lb'), { foo: 'bar', complex: { x: 'abcd', y: 1234, list: ['a', 'b'] }, null: null });
    });

    test('dynamicMetadata: binary-safe strings', () => {
      const h = make('function envoy_on_request(h) local dm = h:streamInfo():dynamicMetadata() dm:set("n", "k", "he\\0llo") h:logInfo(#dm:get("n").k) end');
      h.stream().decodeHeaders(REQ, true);
      assert.deepEqual(h.logs.script(LEVEL.info), ['6']);
    });

    test('filterState():get', () => {
      const h = make('function envoy_on_request(h) local fs = h:streamInfo():filterState() h:logInfo(fs:get("s") .. "," .. fs:get("o", "f") .. "," .. tostring(fs:get("missing"))) end');
      const s = h.stream();
      s.streamInfo.filterState.set('s', 'value');
      s.streamInfo.filterState.set('o', { f: 'field' });
      s.decodeHeaders(REQ, true);
      assert.deepEqual(h.logs.script(LEVEL.info), ['value,field,nil']);
    });

    // ------------------------------------------------------------ stream info, connection
    test('streamInfo: protocol, addresses, SNI, route name; plaintext has no SSL', () => {
      const h = make(`function envoy_on_request(h)
        local si = h:streamInfo()
        h:logInfo(si:protocol())
        h:logInfo(si:downstreamLocalAddress() .. " " .. si:downstreamRemoteAddress() .. " " .. si:downstreamDirectRemoteAddress())
        h:logInfo("[" .. si:requestedServerName() .. "] " .. si:routeName() .. " [" .. si:virtualClusterName() .. "]")
        h:logInfo(tostring(si:downstreamSslConnection()) .. " " .. tostring(h:connection():ssl()))
      end`);
      const s = h.stream();
      s.streamInfo.downstreamLocalAddress = { address: '127.0.0.1', port: 8080 };
      s.streamInfo.downstreamRemoteAddress = { address: '10.0.0.1', port: 1234 };
      s.streamInfo.downstreamDirectRemoteAddress = { address: '::1', port: 5555 };
      s.streamInfo.routeName = 'my-route';
      s.decodeHeaders(REQ, true);
      assert.deepEqual(h.logs.script(LEVEL.info), ['HTTP/1.1', '127.0.0.1:8080 10.0.0.1:1234 [::1]:5555', '[] my-route []', 'nil nil']);
    });

    test('SSL connection object over TLS', () => {
      const h = make('function envoy_on_request(h) local ssl = h:connection():ssl() h:logInfo(ssl:tlsVersion() .. "," .. ssl:ciphersuiteString() .. "," .. tostring(ssl:peerCertificatePresented()) .. "," .. #ssl:uriSanPeerCertificate() .. "," .. ssl:ciphersuiteId()) end');
      const s = h.stream();
      s.streamInfo.downstreamTls = { protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', peerCertificatePresented: false, alpn: 'h2' };
      s.streamInfo.requestedServerName = 'example.com';
      s.decodeHeaders(REQ, true);
      assert.deepEqual(h.logs.script(LEVEL.info), ['TLSv1.3,TLS_AES_128_GCM_SHA256,false,0,0xffff']);
    });

    test('drainConnectionUponCompletion', () => {
      const h = make('function envoy_on_response(h) h:streamInfo():drainConnectionUponCompletion() end');
      const s = h.stream();
      s.decodeHeaders(REQ, true);
      s.encodeHeaders(RESP, true);
      assert.equal(s.streamInfo.drainConnectionUponCompletion, true);
    });

    // ------------------------------------------------------------ utilities
    test('log levels map to the lua logger; non-strings are rejected', () => {
      const h = make('function envoy_on_request(h) h:logTrace("t") h:logDebug("d") h:logInfo(1) h:logWarn("w") h:logErr("e") h:logCritical("c") h:logTrace({}) end');
      h.stream().decodeHeaders(REQ, true);
      assert.deepEqual(h.logs.lines.filter((l) => l.msg.startsWith('script log: ')).map((l) => [l.level, l.msg.slice(12)]).slice(0, 6), [
        [10, 't'], [20, 'd'], [30, '1'], [40, 'w'], [50, 'e'], [60, 'c'],
      ]);
      assert.match(h.logs.script(LEVEL.error)[1]!, /bad argument #1 to 'logTrace' \(string expected, got table\)$/);
    });

    test('base64Escape, timestamp, timestampString', () => {
      const h = make(`function envoy_on_request(h)
        h:logInfo(h:base64Escape("foobar") .. "," .. h:base64Escape("\\31\\139\\8\\0"))
        local ms = h:timestamp()
        h:logInfo(type(ms) .. "," .. tostring(ms > 1.6e12) .. "," .. #h:timestampString() .. "," .. #h:timestampString(EnvoyTimestampResolution.MICROSECOND))
        h:logInfo(select(2, pcall(h.timestamp, h, 1)))
        h:logInfo(select(2, pcall(h.timestampString, h, 2)))
      end`);
      h.stream().decodeHeaders(REQ, true);
      const logs = h.logs.script(LEVEL.info);
      assert.equal(logs[0], 'Zm9vYmFy,H4sIAA==');
      assert.equal(logs[1], 'number,true,13,16');
      assert.match(logs[2]!, /timestamp format must be MILLISECOND\.$/);
      assert.match(logs[3]!, /timestamp format must be MILLISECOND or MICROSECOND\.$/);
    });

    test('importPublicKey / verifySignature', () => {
      const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
      const der = publicKey.export({ type: 'spki', format: 'der' });
      const data = 'hello';
      const sig = sign('sha256', Buffer.from(data), privateKey);
      const lit = (b: Buffer) => '"' + [...b].map((x) => '\\' + x).join('') + '"';
      const h = make(`function envoy_on_request(h)
        local key = ${lit(der)}
        local sig = ${lit(sig)}
        local pk = h:importPublicKey(key, #key):get()
        h:logInfo(tostring(pk ~= nil))
        h:logInfo(tostring(h:importPublicKey("junk", 4):get() ~= nil))
        local ok, e = h:verifySignature("sha256", pk, sig, #sig, "hello", 5)
        h:logInfo(tostring(ok) .. "," .. tostring(e))
        ok, e = h:verifySignature("unknown", pk, sig, #sig, "hello", 5)
        h:logInfo(tostring(ok) .. "," .. tostring(e))
        ok, e = h:verifySignature("sha256", pk, sig, #sig, "bad", 3)
        h:logInfo(tostring(ok) .. "," .. tostring(e))
        h:logInfo(select(2, pcall(h.verifySignature, h, "sha256", "nokey", sig, #sig, "hello", 5)))
      end`);
      h.stream().decodeHeaders(REQ, true);
      const logs = h.logs.script(LEVEL.info);
      assert.deepEqual(logs.slice(0, 5), ['true', 'true', 'true,nil', 'false,unknown is not supported.', 'false,Failed to verify digest. Error code: 0']);
      assert.match(logs[5]!, /invalid public key$/);
    });

    test('setUpstreamOverrideHost validation', () => {
      const cases: [string, RegExp | null][] = [
        ['h:setUpstreamOverrideHost("10.0.0.1:8080")', null],
        ['h:setUpstreamOverrideHost("[::1]:80", true)', null],
        ['h:setUpstreamOverrideHost("example.com")', /host is not a valid IP address$/],
        ['h:setUpstreamOverrideHost()', /bad argument #1 to 'setUpstreamOverrideHost' \(string expected, got no value\)$/],
        ['h:setUpstreamOverrideHost("10.0.0.1", "yes")', /bad argument #2 to 'setUpstreamOverrideHost' \(boolean expected, got string\)$/],
      ];
      for (const [call, re] of cases) {
        const h = make(`function envoy_on_request(h) ${call} end`);
        const s = h.stream();
        s.decodeHeaders(REQ, true);
        if (re) assert.match(h.logs.script(LEVEL.error)[0] ?? '(none)', re, call);
        else {
          assert.equal(h.errors(), 0, call);
          assert.ok(s.streamInfo.filterState.get('envoy.upstream.override_host'));
        }
      }
    });

    test('stats(): custom counters and gauges under the filter scope', () => {
      const h = make('function envoy_on_request(h) local c = h:stats():counter("hits") c:inc() c:add(2) h:logInfo(c:value()) local g = h:stats():gauge("g") g:set(5) g:dec() h:logInfo(g:value()) end');
      h.stream().decodeHeaders(REQ, true);
      assert.deepEqual(h.logs.script(LEVEL.info), ['3', '4']);
      assert.equal(h.stats.counter('http.test.lua.hits').value, 3);
    });

    test('downstreamRequestHeaders() on the response path is read-only', () => {
      const h = make('function envoy_on_response(h) local rh = h:downstreamRequestHeaders() h:logInfo(rh:get(":path") .. "," .. tostring(rh.add)) end');
      const s = h.stream();
      s.decodeHeaders(REQ, true);
      s.encodeHeaders(RESP, true);
      assert.deepEqual(h.logs.script(LEVEL.info), ['/p,nil']);
    });

    test('request and response hooks together (RequestAndResponse)', () => {
      const h = make(`function envoy_on_request(h) h:headers():add("req", "1") end
        function envoy_on_response(h) local n = h:body():length() h:headers():remove("foo") h:headers():add("resp", n) end`);
      const s = h.stream();
      s.decodeHeaders(REQ, true);
      assert.equal(s.encodeHeaders([...RESP, ['foo', 'x']], false), HeadersStatus.StopIteration);
      assert.equal(s.encodeData('1234567', true).status, DataStatus.Continue);
      assert.equal(s.respHeaders!.get('resp'), '7');
      assert.equal(s.respHeaders!.get('foo'), undefined);
      assert.equal(h.executions(), 2);
    });
  });

  // hono-style cleanup: states are closed once the suite is done
  it(`closes states (${opts.name})`, () => {
    for (const h of open) h.close();
  });
}
