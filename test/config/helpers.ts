/** Small builders shared by the config tests. */
import assert from 'node:assert/strict';
import { loadExtensionObjects, loadExtensionSources } from '../../src/config/extensions.ts';
import type { ProxyIdentity, TrafficExtension } from '../../src/config/types.ts';

/** Loads one TrafficExtension through the real loader (so it is valid) and returns it. */
export function te(name: string, namespace: string, spec: Record<string, unknown>, meta: Record<string, unknown> = {}): TrafficExtension {
  const r = loadExtensionObjects([{ apiVersion: 'extensions.istio.io/v1alpha1', kind: 'TrafficExtension', metadata: { name, namespace, ...meta }, spec }]);
  const errors = r.issues.filter((i) => i.level === 'error');
  assert.deepEqual(errors, [], `fixture ${name}.${namespace} must be valid`);
  assert.equal(r.set.extensions.length, 1);
  return r.set.extensions[0]!;
}

export const LUA = { inlineCode: 'function envoy_on_request(h) end' };

/** Loads YAML text and asserts it has no errors. */
export function loadYaml(text: string, file = 'test.yaml'): TrafficExtension[] {
  const r = loadExtensionSources([{ file, text }]);
  assert.deepEqual(r.issues.filter((i) => i.level === 'error'), [], 'fixture must be valid');
  return r.set.extensions;
}

export function proxy(p: Partial<ProxyIdentity> = {}): ProxyIdentity {
  return { namespace: 'default', labels: {}, rootNamespace: 'istio-system', workloadName: 'w', clusterId: 'Kubernetes', ...p };
}

export const names = (list: readonly TrafficExtension[]): string[] => list.map((e) => e.metadata.name);

/** Resolves when `pred` holds, polling; rejects after `ms`. */
export async function waitFor(pred: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
