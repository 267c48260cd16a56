/**
 * Istio's fetch-failure fallback (spec §3.1 step 4, §4.1): the agent replaces an extension whose
 * module cannot be fetched by an RBAC filter. FAIL_CLOSE and FAIL_RELOAD deny everything (HTTP:
 * 403 `RBAC: access denied`, details `rbac_access_denied_matched_policy[none]`; TCP: connection
 * closed on its first bytes, as Envoy's network RBAC does); FAIL_OPEN allows everything, which is
 * the same as having no filter at all.
 */
import type { FailStrategy } from '../config/types.ts';
import { HeadersStatus, NetworkFilterStatus } from '../filters/types.ts';
import type { HttpFilterCallbacks, HttpFilterFactory, NetworkFilterCallbacks, NetworkFilterFactory } from '../filters/types.ts';
import type { StatsStore } from '../observability/stats.ts';

export const DENY_BODY = 'RBAC: access denied';
export const DENY_DETAILS = 'rbac_access_denied_matched_policy[none]';
/** Stat prefixes of Istio's fallback RBAC filters. */
export const DENY_STAT_PREFIX = 'wasm-default-deny';
export const ALLOW_STAT_PREFIX = 'wasm-default-allow';

/** True when a fetch failure must deny traffic (FAIL_CLOSE, FAIL_RELOAD and unset). */
export function deniesOnFetchFailure(strategy: FailStrategy | undefined): boolean {
  return strategy !== 'FAIL_OPEN';
}

/** HTTP deny-all filter; `name` is the extension's filter name, so it occupies the same slot. */
export function createDenyAllHttpFilterFactory(name: string, stats?: StatsStore): HttpFilterFactory {
  const denied = stats?.counter(`http.rbac.${DENY_STAT_PREFIX}.denied`);
  return {
    name,
    create(cb: HttpFilterCallbacks) {
      return {
        decodeHeaders() {
          denied?.inc();
          cb.sendLocalReply(403, DENY_BODY, { details: DENY_DETAILS });
          return HeadersStatus.StopIteration;
        },
      };
    },
  };
}

/** Network deny-all filter: closes the connection without flushing when the client sends data. */
export function createDenyAllNetworkFilterFactory(name: string, stats?: StatsStore): NetworkFilterFactory {
  const denied = stats?.counter(`rbac.${DENY_STAT_PREFIX}.denied`);
  return {
    name,
    create(cb: NetworkFilterCallbacks) {
      return {
        onDownstreamData() {
          denied?.inc();
          cb.close(false, DENY_DETAILS);
          return NetworkFilterStatus.StopIteration;
        },
      };
    },
  };
}
