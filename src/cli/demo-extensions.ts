/**
 * The demo's TrafficExtensions, following the examples of Istio's TrafficExtension docs: the
 * "parity" Lua script (x-number in the request → x-parity in the response, carried through
 * dynamic metadata).
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

export async function demoExtensions(): Promise<unknown[]> {
  return [
    {
      apiVersion: 'extensions.istio.io/v1alpha1',
      kind: 'TrafficExtension',
      metadata: { name: 'parity', namespace: 'default' },
      spec: { phase: 'STATS', lua: { inlineCode: PARITY_LUA } },
    },
  ];
}
