/**
 * node:http and node:tls for the data plane, loaded with require rather than an ES import: an ES
 * module namespace of a builtin reads every export, and the lazy ones load more (node:http's
 * WebSocket/EventSource getters pull in Node's bundled undici, node:tls's rootCertificates the CA
 * list): ~1.5 MiB of heap in every worker that the proxy never uses.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
export const http = require('node:http') as typeof import('node:http');
export const tls = require('node:tls') as typeof import('node:tls');
