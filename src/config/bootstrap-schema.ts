/**
 * JSON Schema of meshext's bootstrap YAML (documented field by field in docs/bootstrap.md).
 * Structure and types only; defaults, cross-references (cluster and route-table names, ports in
 * use, regexes) are checked in bootstrap.ts so that every problem is reported in one pass.
 */

const port = { type: 'integer', minimum: 0, maximum: 65535 } as const;
const upstreamPort = { type: 'integer', minimum: 1, maximum: 65535 } as const;
const nonEmpty = { type: 'string', minLength: 1 } as const;
const stringMap = { type: 'object', additionalProperties: { type: 'string' } } as const;

const endpointAddr = {
  type: 'object',
  additionalProperties: false,
  required: ['port'],
  properties: { address: nonEmpty, port },
} as const;

// `null` disables the listener; object keywords only apply to objects, so no anyOf (whose
// branch-by-branch errors would read badly).
const nullableEndpoint = { ...endpointAddr, type: ['object', 'null'] } as const;

const headerMatcher = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: nonEmpty,
    exact: { type: 'string' },
    prefix: { type: 'string' },
    regex: { type: 'string' },
    present: { type: 'boolean' },
    invert: { type: 'boolean' },
  },
} as const;

const route = {
  type: 'object',
  additionalProperties: false,
  properties: {
    name: { type: 'string' },
    match: {
      type: 'object',
      additionalProperties: false,
      properties: {
        prefix: { type: 'string' },
        path: { type: 'string' },
        regex: { type: 'string' },
        methods: { type: 'array', items: nonEmpty },
        headers: { type: 'array', items: headerMatcher },
      },
    },
    route: {
      type: 'object',
      additionalProperties: false,
      required: ['cluster'],
      properties: {
        cluster: nonEmpty,
        timeoutMs: { type: 'integer', minimum: 0 },
        prefixRewrite: { type: 'string' },
        hostRewrite: nonEmpty,
      },
    },
    directResponse: {
      type: 'object',
      additionalProperties: false,
      required: ['status'],
      properties: {
        status: { type: 'integer', minimum: 200, maximum: 599 },
        body: { type: 'string' },
        headers: stringMap,
      },
    },
    redirect: {
      type: 'object',
      additionalProperties: false,
      properties: {
        status: { type: 'integer', enum: [301, 302, 303, 307, 308] },
        scheme: { type: 'string', enum: ['http', 'https'] },
        host: nonEmpty,
        port: upstreamPort,
        path: { type: 'string', pattern: '^/' },
        prefixRewrite: { type: 'string' },
        stripQuery: { type: 'boolean' },
      },
    },
    metadata: { type: 'object', additionalProperties: { type: 'object' } },
  },
} as const;

export const bootstrapJsonSchema = {
  $id: 'https://meshext.dev/schemas/bootstrap.json',
  type: 'object',
  additionalProperties: false,
  properties: {
    node: {
      type: 'object',
      additionalProperties: false,
      properties: {
        namespace: nonEmpty,
        labels: stringMap,
        gatewayName: nonEmpty,
        waypoint: { type: 'boolean' },
        rootNamespace: nonEmpty,
        workloadName: nonEmpty,
        clusterId: nonEmpty,
      },
    },
    admin: endpointAddr,
    prometheus: nullableEndpoint,
    readiness: nullableEndpoint,
    listeners: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'port'],
        properties: {
          name: nonEmpty,
          address: nonEmpty,
          port,
          protocol: { type: 'string', enum: ['HTTP', 'TCP'] },
          direction: { type: 'string', enum: ['gateway', 'sidecar_inbound', 'sidecar_outbound'] },
          tls: {
            type: 'object',
            additionalProperties: false,
            required: ['certFile', 'keyFile'],
            properties: {
              certFile: nonEmpty,
              keyFile: nonEmpty,
              caFile: nonEmpty,
              alpn: { type: 'array', items: { type: 'string', enum: ['h2', 'http/1.1'] } },
            },
          },
          routeConfig: nonEmpty,
          cluster: nonEmpty,
          bufferLimitBytes: { type: 'integer', minimum: 1 },
          statPrefix: nonEmpty,
        },
      },
    },
    routeConfigs: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'virtualHosts'],
        properties: {
          name: nonEmpty,
          virtualHosts: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['name', 'domains', 'routes'],
              properties: {
                name: nonEmpty,
                domains: { type: 'array', minItems: 1, items: nonEmpty },
                routes: { type: 'array', items: route },
              },
            },
          },
        },
      },
    },
    clusters: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'endpoints'],
        properties: {
          name: nonEmpty,
          endpoints: {
            type: 'array',
            minItems: 1,
            // "host:port" / "[v6]:port" strings or {address, port}; string and object keywords each
            // apply only to their own type.
            items: {
              type: ['string', 'object'],
              pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[^:\\[\\]]+):[0-9]+$',
              additionalProperties: false,
              required: ['address', 'port'],
              properties: { address: nonEmpty, port: upstreamPort },
            },
          },
          lbPolicy: { type: 'string', enum: ['ROUND_ROBIN'] },
          connectTimeoutMs: { type: 'integer', minimum: 1 },
          requestTimeoutMs: { type: 'integer', minimum: 0 },
          maxConnections: { type: 'integer', minimum: 1 },
          protocol: { type: 'string', enum: ['HTTP1', 'HTTP2'] },
          tls: {
            type: 'object',
            additionalProperties: false,
            properties: { sni: nonEmpty, caFile: nonEmpty, insecureSkipVerify: { type: 'boolean' } },
          },
        },
      },
    },
    extensions: { type: 'array', items: nonEmpty },
    accessLog: { type: ['string', 'null'], minLength: 1 },
    drainTimeoutMs: { type: 'integer', minimum: 0 },
    lua: {
      type: 'object',
      additionalProperties: false,
      properties: {
        engine: { type: 'string', enum: ['auto', 'compiled', 'luajit', 'wasm'] },
        memoryLimitBytes: { type: 'integer', minimum: 65536 },
        instructionBudget: { type: 'integer', minimum: 1000 },
        failClosed: { type: 'boolean' },
        allowUnsafeLibs: { type: 'boolean' },
      },
    },
    wasm: {
      type: 'object',
      additionalProperties: false,
      properties: {
        memoryLimitBytes: { type: 'integer', minimum: 65536 },
        cpuBudgetMs: { type: 'integer', minimum: 1 },
        cacheDir: nonEmpty,
        insecureRegistries: { type: 'array', items: nonEmpty },
        allowLoopbackFetch: { type: 'boolean' },
      },
    },
  },
} as const;
