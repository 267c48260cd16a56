import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * The demo's TrafficExtensions, following the examples of Istio's TrafficExtension docs: the
 * "parity" Lua script (x-number in the request → x-parity in the response, carried through
 * dynamic metadata) and a small Proxy-Wasm plugin that adds a response header.
 */
export const PARITY_LUA = `
function envoy_on_request(request_handle)
  local n = tonumber(request_handle:headers():get("x-number"))
  if n ~= nil then
    local parity = (n % 2 == 0) and "even" or "odd"
    request_handle:streamInfo():dynamicMetadata():set("envoy.filters.http.lua", "parity", parity)
  end
end

function envoy_on_response(response_handle)
  local meta = response_handle:streamInfo():dynamicMetadata():get("envoy.filters.http.lua")
  if meta ~= nil and meta["parity"] ~= nil then
    response_handle:headers():add("x-parity", meta["parity"])
  end
end
`;

/**
 * Compiles examples/plugins/add-header.wat to build/demo/add-header.wasm with wabt (a
 * devDependency, present after `npm install`). Returns the file:// URL, or undefined when wabt is
 * missing (the demo then runs with the Lua extension only).
 */
async function buildDemoPlugin(): Promise<string | undefined> {
  const root = resolve(import.meta.dirname, '../..');
  try {
    const wabt = await (await import('wabt')).default();
    const text = await readFile(join(root, 'examples/plugins/add-header.wat'), 'utf8');
    const mod = wabt.parseWat('add-header.wat', text);
    mod.validate();
    const { buffer } = mod.toBinary({});
    mod.destroy();
    const out = join(root, 'build/demo/add-header.wasm');
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, buffer);
    return pathToFileURL(out).href;
  } catch (err) {
    console.error(`demo: the Wasm example is not available (${(err as Error).message})`);
    return undefined;
  }
}

export async function demoExtensions(): Promise<unknown[]> {
  const wasmUrl = await buildDemoPlugin();
  const wasm = wasmUrl
    ? [
        {
          apiVersion: 'extensions.istio.io/v1alpha1',
          kind: 'TrafficExtension',
          metadata: { name: 'add-header', namespace: 'default' },
          spec: { phase: 'AUTHZ', wasm: { url: wasmUrl, pluginConfig: { demo: true }, failStrategy: 'FAIL_OPEN' } },
        },
      ]
    : [];
  return [
    ...wasm,
    {
      apiVersion: 'extensions.istio.io/v1alpha1',
      kind: 'TrafficExtension',
      metadata: { name: 'parity', namespace: 'default' },
      spec: { phase: 'STATS', lua: { inlineCode: PARITY_LUA } },
    },
  ];
}
