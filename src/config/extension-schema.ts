/**
 * JSON Schemas equivalent to the OpenAPI schemas of the TrafficExtension and WasmPlugin CRDs
 * (extensions.istio.io/v1alpha1, Istio 1.30), written from the field tables in
 * traffic-extension.md §1.2–1.6 and §1.8. CEL rules and list-map uniqueness are not expressible
 * here; extension-validate.ts hand-codes them.
 */

const dnsSubdomainPattern = '^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';

const int32 = { type: 'integer', minimum: -2147483648, maximum: 2147483647 } as const;

const workloadSelector = {
  type: 'object',
  additionalProperties: false,
  properties: {
    matchLabels: {
      type: 'object',
      maxProperties: 4096,
      additionalProperties: { type: 'string', maxLength: 63 },
    },
  },
} as const;

const policyTargetReference = {
  type: 'object',
  additionalProperties: false,
  required: ['kind', 'name'],
  properties: {
    group: { type: 'string', maxLength: 253, pattern: dnsSubdomainPattern },
    kind: { type: 'string', minLength: 1, maxLength: 63, pattern: '^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$' },
    name: { type: 'string', minLength: 1, maxLength: 253 },
    namespace: { type: 'string' },
  },
} as const;

const trafficSelector = {
  type: 'object',
  additionalProperties: false,
  properties: {
    mode: { type: 'string', enum: ['UNDEFINED', 'CLIENT', 'SERVER', 'CLIENT_AND_SERVER'] },
    ports: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['number'],
        properties: { number: { type: 'integer', minimum: 1, maximum: 65535 } },
      },
    },
  },
} as const;

const vmConfig = {
  type: 'object',
  additionalProperties: false,
  properties: {
    env: {
      type: 'array',
      maxItems: 256,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 256 },
          value: { type: 'string', maxLength: 2048 },
          valueFrom: { type: 'string', enum: ['INLINE', 'HOST'] },
        },
      },
    },
  },
} as const;

/** The fields of WasmConfig; WasmPlugin carries the same fields at the top of its spec. */
const wasmFields = {
  url: { type: 'string', minLength: 1 },
  sha256: { type: 'string', pattern: '(^$|^[a-f0-9]{64}$)' },
  imagePullPolicy: { type: 'string', enum: ['UNSPECIFIED_POLICY', 'IfNotPresent', 'Always'] },
  imagePullSecret: { type: 'string', minLength: 1, maxLength: 253 },
  verificationKey: { type: 'string' },
  // x-kubernetes-preserve-unknown-fields: anything goes inside.
  pluginConfig: { type: 'object' },
  pluginName: { type: 'string', minLength: 1, maxLength: 256 },
  failStrategy: { type: 'string', enum: ['FAIL_CLOSE', 'FAIL_OPEN', 'FAIL_RELOAD'] },
  vmConfig,
  type: { type: 'string', enum: ['UNSPECIFIED_PLUGIN_TYPE', 'HTTP', 'NETWORK'] },
} as const;

export const trafficExtensionSpecSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    selector: workloadSelector,
    targetRefs: { type: 'array', maxItems: 16, items: policyTargetReference },
    phase: { type: 'string', enum: ['UNSPECIFIED', 'AUTHN', 'AUTHZ', 'STATS'] },
    // google.protobuf.Int32Value: nullable; the loader drops nulls before validation.
    priority: int32,
    match: { type: 'array', items: trafficSelector },
    wasm: { type: 'object', additionalProperties: false, required: ['url'], properties: wasmFields },
    lua: {
      type: 'object',
      additionalProperties: false,
      required: ['inlineCode'],
      properties: { inlineCode: { type: 'string', minLength: 1, maxLength: 65536 } },
    },
  },
} as const;

export const wasmPluginSpecSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['url'],
  properties: {
    selector: workloadSelector,
    targetRef: policyTargetReference,
    targetRefs: { type: 'array', maxItems: 16, items: policyTargetReference },
    phase: { type: 'string', enum: ['UNSPECIFIED_PHASE', 'AUTHN', 'AUTHZ', 'STATS'] },
    priority: int32,
    match: { type: 'array', items: trafficSelector },
    ...wasmFields,
  },
} as const;

const objectMeta = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    namespace: { type: 'string' },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    annotations: { type: 'object', additionalProperties: { type: 'string' } },
    creationTimestamp: { type: ['string', 'null'] },
    resourceVersion: { type: 'string' },
    generation: { type: 'integer' },
  },
} as const;

/** Whole-object schemas: apiVersion/kind/metadata/spec (+ status, which we ignore). */
export function resourceSchema(spec: object): object {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['spec'],
    properties: {
      apiVersion: { type: 'string' },
      kind: { type: 'string' },
      metadata: objectMeta,
      spec,
      status: { type: 'object' },
    },
  };
}
