/**
 * Test filters that exercise the filter-manager contract: each is configured by a small spec and
 * records what it saw, so tests can assert both the traffic and the callback sequence.
 */
import type { DataBuffer } from '../../src/filters/data-buffer.ts';
import type { HeaderMap } from '../../src/filters/header-map.ts';
import {
  DataStatus,
  HeadersStatus,
  TrailersStatus,
  type HttpFilter,
  type HttpFilterCallbacks,
  type HttpFilterFactory,
} from '../../src/filters/types.ts';

export interface TestFilterSpec {
  name: string;
  /** Appended to x-order on the request and to x-order-resp on the response. */
  tag?: string;
  decodeHeaders?: HeadersStatus;
  encodeHeaders?: HeadersStatus;
  decodeData?: DataStatus | ((data: DataBuffer, end: boolean) => DataStatus);
  encodeData?: DataStatus | ((data: DataBuffer, end: boolean) => DataStatus);
  /** After stopping, resume from a timer after this many ms. */
  resumeAfterMs?: number;
  /** Local reply from decodeHeaders. */
  replyOnRequest?: { status: number; body: string; details: string };
  /** Local reply from encodeHeaders. */
  replyOnResponse?: { status: number; body: string; details: string };
  /** Upper-cases the request body once it is complete (requires a buffering decodeData). */
  upperCaseRequestBody?: boolean;
  /** Writes dynamic metadata on the request, read back on the response into a header. */
  metadata?: boolean;
  throwOnRequest?: boolean;
}

export interface FilterLog {
  events: string[];
}

export function testFilter(spec: TestFilterSpec, log: FilterLog = { events: [] }): HttpFilterFactory {
  return {
    name: spec.name,
    create(cb: HttpFilterCallbacks): HttpFilter {
      const ev = (e: string) => log.events.push(`${spec.name}:${e}`);
      const f: HttpFilter = {
        decodeHeaders(headers: HeaderMap, end: boolean) {
          ev(`decodeHeaders(end=${end})`);
          if (spec.throwOnRequest) throw new Error('test filter failure');
          if (spec.tag) headers.set('x-order', (headers.get('x-order') ?? '') + spec.tag);
          if (spec.metadata) {
            cb.streamInfo.setDynamicMetadata(spec.name, 'seen', headers.get(':path'));
            cb.streamInfo.filterState.set(`${spec.name}.state`, 'set-by-' + spec.name);
          }
          if (spec.replyOnRequest) {
            const r = spec.replyOnRequest;
            cb.sendLocalReply(r.status, r.body, { details: r.details, headers: [['x-local', spec.name]] });
            return HeadersStatus.StopIteration;
          }
          const status = spec.decodeHeaders ?? HeadersStatus.Continue;
          if (status !== HeadersStatus.Continue && spec.resumeAfterMs !== undefined) {
            setTimeout(() => {
              ev('continueDecoding');
              cb.continueDecoding();
            }, spec.resumeAfterMs);
          }
          return status;
        },
        decodeData(data: DataBuffer, end: boolean) {
          ev(`decodeData(${data.length},end=${end})`);
          const d = spec.decodeData;
          let status = typeof d === 'function' ? d(data, end) : (d ?? DataStatus.Continue);
          if (spec.upperCaseRequestBody) {
            if (!end) return DataStatus.StopIterationAndBuffer;
            const upper = data.toString().toUpperCase();
            data.set(upper);
            cb.requestHeaders()?.set('content-length', String(Buffer.byteLength(upper)));
            status = DataStatus.Continue;
          }
          return status;
        },
        decodeTrailers(_t: HeaderMap) {
          ev('decodeTrailers');
          return TrailersStatus.Continue;
        },
        encodeHeaders(headers: HeaderMap, end: boolean) {
          ev(`encodeHeaders(end=${end})`);
          if (spec.tag) headers.set('x-order-resp', (headers.get('x-order-resp') ?? '') + spec.tag);
          if (spec.metadata) {
            const md = cb.streamInfo.dynamicMetadata.get(spec.name);
            headers.set(`x-md-${spec.name}`, String(md?.seen));
            headers.set(`x-fs-${spec.name}`, String(cb.streamInfo.filterState.get(`${spec.name}.state`)));
          }
          if (spec.replyOnResponse) {
            const r = spec.replyOnResponse;
            cb.sendLocalReply(r.status, r.body, { details: r.details });
            return HeadersStatus.StopIteration;
          }
          const status = spec.encodeHeaders ?? HeadersStatus.Continue;
          if (status !== HeadersStatus.Continue && spec.resumeAfterMs !== undefined) {
            setTimeout(() => {
              ev('continueEncoding');
              cb.continueEncoding();
            }, spec.resumeAfterMs);
          }
          return status;
        },
        encodeData(data: DataBuffer, end: boolean) {
          ev(`encodeData(${data.length},end=${end})`);
          const d = spec.encodeData;
          return typeof d === 'function' ? d(data, end) : (d ?? DataStatus.Continue);
        },
        log() {
          ev('log');
        },
        onDestroy() {
          ev('onDestroy');
        },
      };
      return f;
    },
  };
}
