/**
 * Cross-checks the hand-coded CEL rules against the CRD's own expressions, evaluated by a real CEL
 * interpreter (@marcbachmann/cel-js) on the same inputs. The URL rule needs Kubernetes' `isURL` /
 * `url()` library and is covered by the url table in extensions.test.ts instead.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evaluate } from '@marcbachmann/cel-js';
import { apiserverProblems } from '../../src/config/extension-validate.ts';

const LUA = { inlineCode: 'x' };
type Obj = Record<string, unknown>;

/** Did our layer 1 report `message` (a CEL failure) at `path` for this spec? */
function reported(spec: Obj, path: string, message: string): boolean {
  const obj = { apiVersion: 'extensions.istio.io/v1alpha1', kind: 'TrafficExtension', metadata: { name: 'c' }, spec };
  return apiserverProblems(obj, 'TrafficExtension').some((p) => p.layer === 'cel' && p.segs.join('.') === path && p.message.endsWith(message));
}

interface Rule {
  rule: string;
  message: string;
  /** Where the rule sits: builds a spec around `self`, and the path of `self`. */
  place: (self: unknown) => Obj;
  path: string;
  samples: unknown[];
}

const rules: Rule[] = [
  {
    rule: '(has(self.selector)?1:0)+(has(self.targetRefs)?1:0)<=1',
    message: 'only one of targetRefs or selector can be set',
    place: (self) => ({ ...(self as Obj), lua: LUA }),
    path: 'spec',
    samples: [{}, { selector: {} }, { targetRefs: [] }, { selector: { matchLabels: { a: 'b' } }, targetRefs: [] }, { selector: {}, targetRefs: [{ kind: 'Service', name: 's' }] }],
  },
  {
    rule: 'has(self.wasm) != has(self.lua)',
    message: 'exactly one of wasm or lua must be set',
    place: (self) => self as Obj,
    path: 'spec',
    samples: [{}, { lua: LUA }, { wasm: { url: 'oci://r/x' } }, { lua: LUA, wasm: { url: 'oci://r/x' } }],
  },
  {
    rule: "!self.contains('*')",
    message: 'wildcard not allowed in label value match',
    place: (self) => ({ lua: LUA, selector: { matchLabels: { app: self } } }),
    path: 'spec.selector.matchLabels.app',
    samples: ['a', '', '*', 'a*b', 'x*'],
  },
  {
    rule: "self.all(key, !key.contains('*'))",
    message: 'wildcard not allowed in label key match',
    place: (self) => ({ lua: LUA, selector: { matchLabels: self } }),
    path: 'spec.selector.matchLabels',
    samples: [{}, { a: 'b' }, { 'a*': 'b' }, { a: 'b', '*': 'c' }],
  },
  {
    rule: 'self.all(key, key.size() != 0)',
    message: 'key must not be empty',
    place: (self) => ({ lua: LUA, selector: { matchLabels: self } }),
    path: 'spec.selector.matchLabels',
    samples: [{}, { a: 'b' }, { '': 'b' }, { a: 'b', '': 'c' }],
  },
  {
    rule: 'self.size() == 0',
    message: 'cross namespace referencing is not currently supported',
    place: (self) => ({ lua: LUA, targetRefs: [{ kind: 'Service', name: 's', namespace: self }] }),
    path: 'spec.targetRefs.0.namespace',
    samples: ['', 'default', 'x'],
  },
  {
    rule: "(has(self.valueFrom) ? self.valueFrom : '') != 'HOST' || !has(self.value)",
    message: 'value may only be set when valueFrom is INLINE',
    place: (self) => ({ wasm: { url: 'oci://r/x', vmConfig: { env: [self] } } }),
    path: 'spec.wasm.vmConfig.env.0',
    samples: [
      { name: 'A' },
      { name: 'A', value: 'v' },
      { name: 'A', valueFrom: 'INLINE', value: 'v' },
      { name: 'A', valueFrom: 'HOST' },
      { name: 'A', valueFrom: 'HOST', value: '' },
      { name: 'A', valueFrom: 'HOST', value: 'v' },
    ],
  },
];

describe('hand-coded CEL rules agree with the CRD expressions', () => {
  for (const r of rules) {
    it(r.message, () => {
      let failures = 0;
      for (const self of r.samples) {
        const passes = evaluate(r.rule, { self }) === true;
        if (!passes) failures++;
        assert.equal(reported(r.place(self), r.path, r.message), !passes, `${r.rule} on ${JSON.stringify(self)}: CEL says ${passes}`);
      }
      assert.ok(failures > 0 && failures < r.samples.length, 'the samples must exercise both outcomes');
    });
  }
});
