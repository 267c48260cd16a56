/**
 * Lua extensions end to end: the real data plane (listener, filter manager, router, clusters),
 * TrafficExtension resources applied through the 'lua' runtime, a real client (undici) and real
 * upstreams on 127.0.0.1. Runs on every engine available here.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { parse } from 'yaml';
import type { Phase, TrafficExtension } from '../../src/config/types.ts';
import '../../src/lua/runtime.ts';
import { getLuajitEngine } from '../../src/lua/engines.ts';
import { DataPlane } from '../../src/proxy/data-plane.ts';
import { bootstrap, cluster, routeAll } from '../helpers/bootstrap.ts';
import { startHttp1, type TestServer } from '../helpers/upstream.ts';

const PARITY = (parse(readFileSync(new URL('../../examples/extensions/parity.yaml', import.meta.url), 'utf8')) as { spec: { lua: { inlineCode: string } } }).spec.lua.inlineCode;

function ext(name: string, code: string, phase: Phase = 'AUTHN', line = 1): TrafficExtension {
  return {
    apiVersion: 'extensions.istio.io/v1alpha1',
    kind: 'TrafficExtension',
    metadata: { name, namespace: 'default' },
    spec: { selector: { matchLabels: { app: 'test' } }, phase, lua: { inlineCode: code } },
    origin: { file: 'ext.yaml', line, kind: 'TrafficExtension' },
  };
}

/** Echo upstream that also reflects a request body transformation. */
const app: http.RequestListener = (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (req.url === '/empty') {
      res.writeHead(200, { 'x-empty': '1', 'content-length': '0' });
      res.end();
      return;
    }
    if (req.url?.startsWith('/slow/')) {
      // answers after a per-request delay so that suspended hooks finish out of order
      const ms = Number(req.url.split('/')[2]);
      setTimeout(() => {
        res.writeHead(200, { 'x-echo': String(req.headers['x-id']) });
        res.end();
      }, ms);
      return;
    }
    if (req.url === '/auth') {
      res.writeHead(req.headers['x-token'] === 'good' ? 200 : 403, { 'x-user': 'alice' });
      res.end('auth-body');
      return;
    }
    const body = JSON.stringify({ url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
};

const engines: ('wasm' | 'luajit')[] = ['wasm'];
if (getLuajitEngine()) engines.push('luajit');

for (const engine of engines) {
  describe(`lua end to end (${engine})`, { timeout: 30_000 }, () => {
    let upstream: TestServer;
    let dp: DataPlane;
    let base: string;

    before(async () => {
      upstream = await startHttp1(app);
      const b = bootstrap({ clusters: [cluster('app', upstream.port), cluster('auth', upstream.port)], routeTables: [routeAll('app')] });
      b.lua = { ...b.lua, engine };
      dp = new DataPlane(b);
      await dp.start();
      base = `http://127.0.0.1:${dp.ports().http}`;
    });
    after(async () => {
      await dp.close();
      await upstream.close();
    });

    it('the Istio parity example: x-number 42 → even, 7 → odd, none → no header', async () => {
      const r = await dp.applyExtensions({ extensions: [ext('parity', PARITY)], secrets: [] });
      assert.deepEqual(r.issues, []);
      for (const [n, want] of [['42', 'even'], ['7', 'odd']]) {
        const res = await request(`${base}/productpage`, { headers: { 'x-number': n! } });
        await res.body.text();
        assert.equal(res.statusCode, 200);
        assert.equal(res.headers['x-parity'], want);
      }
      const res = await request(`${base}/productpage`);
      await res.body.text();
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['x-parity'], undefined);
    });

    it('three extensions in AUTHN, AUTHZ, STATS run in chain order and in reverse on the response ("321")', async () => {
      const digit = (d: string) => `function envoy_on_request(h)
          local v = h:headers():get("x-req-order") or ""
          h:headers():replace("x-req-order", v .. "${d}")
        end
        function envoy_on_response(h)
          local v = h:headers():get("x-order") or ""
          h:headers():replace("x-order", v .. "${d}")
        end`;
      const r = await dp.applyExtensions({ extensions: [ext('three', digit('3'), 'STATS'), ext('one', digit('1'), 'AUTHN'), ext('two', digit('2'), 'AUTHZ')], secrets: [] });
      assert.deepEqual(r.issues, []);
      const res = await request(`${base}/order`);
      const body = (await res.body.json()) as { headers: Record<string, string> };
      assert.equal(body.headers['x-req-order'], '123');
      assert.equal(res.headers['x-order'], '321');
    });

    it('httpCall to a real upstream, respond() on denial, body rewriting in both directions', async () => {
      const code = `function envoy_on_request(h)
          local hd, body = h:httpCall("auth", {[":method"] = "GET", [":path"] = "/auth", [":authority"] = "auth", ["x-token"] = h:headers():get("x-token") or ""}, nil, 5000)
          if hd[":status"] ~= "200" then
            h:respond({[":status"] = "403", ["x-denied"] = "1"}, "denied by lua")
          end
          local b = h:body()
          if b then b:setBytes(string.upper(b:getBytes(0, b:length()))) end
          h:headers():add("x-user", hd["x-user"] .. ":" .. body)
        end
        function envoy_on_response(h)
          local b = h:body()
          local s = b:getBytes(0, b:length())
          b:setBytes("wrapped(" .. s .. ")")
        end`;
      const r = await dp.applyExtensions({ extensions: [ext('auth', code)], secrets: [] });
      assert.deepEqual(r.issues, []);
      const denied = await request(`${base}/x`, { headers: { 'x-token': 'bad' } });
      assert.equal(denied.statusCode, 403);
      assert.equal(denied.headers['x-denied'], '1');
      // the local reply goes through the encoder filters, envoy_on_response included (as in Envoy)
      assert.equal(await denied.body.text(), 'wrapped(denied by lua)');

      const ok = await request(`${base}/x`, { method: 'POST', headers: { 'x-token': 'good' }, body: 'hello body' });
      assert.equal(ok.statusCode, 200);
      const text = await ok.body.text();
      assert.match(text, /^wrapped\(\{.*\}\)$/);
      assert.equal(ok.headers['content-length'], String(Buffer.byteLength(text)));
      const echoed = JSON.parse(text.slice('wrapped('.length, -1)) as { headers: Record<string, string>; body: string };
      assert.equal(echoed.body, 'HELLO BODY');
      assert.equal(echoed.headers['x-user'], 'alice:auth-body');
    });

    it('a load error is rejected with its line and the last good version keeps serving', async () => {
      await dp.applyExtensions({ extensions: [ext('parity', PARITY)], secrets: [] });
      const r = await dp.applyExtensions({ extensions: [ext('parity', 'function envoy_on_request(h)\n  local x = \nend\n', 'AUTHN', 12)], secrets: [] });
      const err = r.issues.find((i) => i.level === 'error');
      assert.ok(err);
      assert.equal(err.file, 'ext.yaml');
      assert.equal(err.line, 12);
      assert.match(err.message, /^script load error: \[string "function envoy_on_request\(h\)\.\.\."\]:3: /);
      const res = await request(`${base}/p`, { headers: { 'x-number': '3' } });
      await res.body.text();
      assert.equal(res.headers['x-parity'], 'odd');
    });

    it('a runtime error is logged and counted and the request goes through (fail-open)', async () => {
      await dp.applyExtensions({ extensions: [ext('broken', 'function envoy_on_request(h) local t = nil; t.x = 1 end')], secrets: [] });
      const before = dp.stats.counter('http.http.lua.errors').value;
      const res = await request(`${base}/p`);
      await res.body.text();
      assert.equal(res.statusCode, 200);
      assert.equal(dp.stats.counter('http.http.lua.errors').value, before + 1);
    });

    it('body(true) adds a body where there was none; bodyChunks streams a large upload', async () => {
      const code = `function envoy_on_request(h)
          if h:headers():get(":path") == "/chunks" then
            local n, total = 0, 0
            for c in h:bodyChunks() do n = n + 1 total = total + c:length() end
            h:logInfo("chunks " .. n .. " " .. total)
          end
        end
        function envoy_on_response(h)
          if h:headers():get("x-empty") then h:body(true):setBytes("made by lua") end
        end`;
      await dp.applyExtensions({ extensions: [ext('bodies', code)], secrets: [] });
      const big = Buffer.alloc(3 * 1024 * 1024, 0x61);
      const res = await request(`${base}/chunks`, { method: 'POST', body: big });
      const echoed = (await res.body.json()) as { body: string };
      assert.equal(echoed.body.length, big.length);
      // RewriteResponseBufferWithoutUpstreamBody: the upstream sent no body at all
      const empty = await request(`${base}/empty`);
      assert.equal(await empty.body.text(), 'made by lua');
      assert.equal(empty.headers['content-length'], '11');
    });

    it('50 concurrent requests suspended in httpCall in one state resume with their own results', async () => {
      const code = `function envoy_on_request(h)
          local id = h:headers():get("x-id")
          local hd = h:httpCall("auth", {[":method"] = "GET", [":path"] = "/slow/" .. (tonumber(id) % 7) * 5, [":authority"] = "a", ["x-id"] = id}, nil, 5000)
          h:headers():add("x-called", hd["x-echo"])
        end
        function envoy_on_response(h)
          h:headers():add("x-seen", h:streamInfo():dynamicMetadata():get("x") == nil and "none" or "some")
        end`;
      await dp.applyExtensions({ extensions: [ext('concurrent', code)], secrets: [] });
      const results = await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const res = await request(`${base}/c`, { headers: { 'x-id': String(i) } });
          const body = (await res.body.json()) as { headers: Record<string, string> };
          return [body.headers['x-called'], res.headers['x-seen']];
        }),
      );
      results.forEach(([called, seen], i) => {
        assert.equal(called, String(i));
        assert.equal(seen, 'none');
      });
    });

    it('setHttp1ReasonPhrase and drainConnectionUponCompletion reach the HTTP/1.1 client', async () => {
      const code = `function envoy_on_response(h)
          h:headers():replace(":status", "400")
          h:headers():setHttp1ReasonPhrase("Slow Down")
          h:streamInfo():drainConnectionUponCompletion()
        end`;
      await dp.applyExtensions({ extensions: [ext('phrase', code)], secrets: [] });
      const raw = await new Promise<string>((resolve, reject) => {
        const sock = connect(Number(new URL(base).port), '127.0.0.1', () => sock.write('GET /p HTTP/1.1\r\nhost: x\r\n\r\n'));
        let data = '';
        sock.setEncoding('latin1');
        sock.on('data', (c: string) => (data += c));
        sock.on('end', () => resolve(data));
        sock.on('error', reject);
        sock.setTimeout(5000, () => reject(new Error('timeout: ' + data)));
      });
      assert.match(raw, /^HTTP\/1\.1 400 Slow Down\r\n/);
      assert.match(raw, /\r\nconnection: close\r\n/i);
    });

    it('fail-closed (bootstrap lua.failClosed): a runtime error answers 500 to the client', async () => {
      const b = bootstrap({ clusters: [cluster('app', upstream.port)], routeTables: [routeAll('app')] });
      b.lua = { ...b.lua, engine, failClosed: true };
      const closed = new DataPlane(b);
      await closed.start();
      try {
        await closed.applyExtensions({ extensions: [ext('strict', 'function envoy_on_request(h) error("policy engine down") end')], secrets: [] });
        const res = await request(`http://127.0.0.1:${closed.ports().http}/p`);
        await res.body.text();
        assert.equal(res.statusCode, 500);
        assert.equal(closed.stats.counter('http.http.lua.errors').value, 1);
      } finally {
        await closed.close();
      }
    });

    it('an infinite loop is cut by the instruction budget; the worker keeps serving', async () => {
      await dp.applyExtensions({ extensions: [ext('loop', 'function envoy_on_request(h) if h:headers():get("x-loop") then while true do end end end')], secrets: [] });
      const t0 = Date.now();
      const res = await request(`${base}/p`, { headers: { 'x-loop': '1' } });
      await res.body.text();
      assert.equal(res.statusCode, 200);
      assert.ok(Date.now() - t0 < 10_000);
      const res2 = await request(`${base}/p`);
      await res2.body.text();
      assert.equal(res2.statusCode, 200);
    });
  });
}
