/**
 * Which TrafficExtensions apply to a listener, and in what order (traffic-extension.md §2.2–2.4),
 * reproducing istiod 1.30 exactly, including its departures from the docs:
 * - candidates are gathered namespace by namespace (proxy namespace, root namespace, then the
 *   namespaces of services bound to a waypoint), each namespace pre-sorted by creationTimestamp,
 *   name, namespace; a stable sort by priority (descending) follows, so on equal priority the
 *   proxy namespace wins over the root namespace whatever the ages;
 * - an unset priority sorts as INT32_MIN (after every explicit priority, negative ones included);
 * - waypoint HTTP chains are queried as SidecarInbound with port 0, so `mode: CLIENT` and any
 *   `ports` list never match there.
 */
import type { ListenerConfig, Phase, PolicyTargetReference, ProxyIdentity, TrafficDirection, TrafficExtension, TrafficSelector } from './types.ts';

export type ListenerClass = 'SidecarInbound' | 'SidecarOutbound' | 'Gateway' | 'Undefined';
export type ChainType = 'HTTP' | 'NETWORK' | 'ANY';

export interface BoundService {
  name: string;
  namespace: string;
  /** `Kubernetes` for a Service, `External` for a ServiceEntry. */
  registry: 'Kubernetes' | 'External' | string;
}

export interface ListenerInfo {
  class: ListenerClass;
  port: number;
  /** Services bound to a waypoint's chain (targets of Service/ServiceEntry targetRefs). */
  services?: readonly BoundService[];
}

export interface SelectionOptions {
  /** istiod's ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY (default true). */
  selectorBasedK8sGatewayPolicy?: boolean;
}

export const PHASES: readonly Phase[] = ['AUTHN', 'AUTHZ', 'STATS', 'UNSPECIFIED'];
const INT32_MIN = -2147483648;
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';

export function extensionPhase(te: TrafficExtension): Phase {
  return te.spec.phase ?? 'UNSPECIFIED';
}

export function extensionPriority(te: TrafficExtension): number {
  return te.spec.priority ?? INT32_MIN;
}

/** Lua: HTTP only. Wasm: NETWORK when `type: NETWORK`, else HTTP. ANY matches everything. */
export function matchesChainType(te: TrafficExtension, chain: ChainType): boolean {
  if (chain === 'ANY') return true;
  if (te.spec.lua) return chain === 'HTTP';
  return (te.spec.wasm?.type === 'NETWORK' ? 'NETWORK' : 'HTTP') === chain;
}

function modeForClass(cls: ListenerClass): 'CLIENT' | 'SERVER' {
  return cls === 'SidecarInbound' ? 'SERVER' : 'CLIENT';
}

/** §2.3: does any TrafficSelector match this listener? Empty list or whole-proxy query: yes. */
export function matchTraffic(match: readonly TrafficSelector[] | undefined, info: ListenerInfo): boolean {
  if ((info.class === 'Undefined' && info.port === 0) || !match || match.length === 0) return true;
  return match.some((s) => {
    const mode = s.mode ?? 'UNDEFINED';
    const modeOk = mode === 'UNDEFINED' || mode === 'CLIENT_AND_SERVER' || mode === modeForClass(info.class);
    const ports = s.ports ?? [];
    const portOk = ports.length === 0 || ports.some((p) => p.number !== 0 && p.number === info.port);
    return modeOk && portOk;
  });
}

function subsetOf(want: Record<string, string> | undefined, have: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(want ?? {})) if (have[k] !== v) return false;
  return true;
}

/** The group/kind of a targetRef with the empty group canonicalised to `core`. */
function groupKind(r: PolicyTargetReference): string {
  return `${r.group ? r.group : 'core'}/${r.kind}`;
}

/** The Gateway API gateway name of a proxy, if it has one (waypoints have one too). */
export function gatewayNameOf(identity: ProxyIdentity): string | undefined {
  return identity.gatewayName ?? identity.labels[GATEWAY_NAME_LABEL];
}

/** §2.4 `ShouldAttachPolicy`: selector vs targetRefs, per proxy type. */
export function shouldAttach(identity: ProxyIdentity, te: TrafficExtension, info: ListenerInfo, opts: SelectionOptions = {}): boolean {
  const gwName = gatewayNameOf(identity);
  const refs = te.spec.targetRefs ?? [];
  const selected = !te.spec.selector || subsetOf(te.spec.selector.matchLabels, identity.labels);
  const teNs = te.metadata.namespace;
  if (gwName === undefined) {
    // Sidecars and classic selector-based gateways: any targetRefs ⇒ not for them at all.
    return refs.length > 0 ? false : selected;
  }
  if (refs.length === 0) {
    if (identity.waypoint || !(opts.selectorBasedK8sGatewayPolicy ?? true)) return false;
    return selected;
  }
  const services = info.services ?? [];
  for (const r of refs) {
    const gk = groupKind(r);
    if (identity.waypoint && gk === 'core/Service' && services.some((s) => s.name === r.name && s.namespace === teNs && s.registry === 'Kubernetes')) return true;
    if (identity.waypoint && gk === 'networking.istio.io/ServiceEntry' && services.some((s) => s.name === r.name && s.namespace === teNs && s.registry === 'External')) return true;
    if (teNs === identity.rootNamespace && identity.waypoint && gk === 'gateway.networking.k8s.io/GatewayClass' && r.name === 'istio-waypoint') return true;
    if (identity.namespace !== teNs) continue;
    if (r.namespace && r.namespace !== identity.namespace) continue;
    if (gk === 'gateway.networking.k8s.io/Gateway' && r.name === gwName) return true;
  }
  return false;
}

/** istiod's sortConfigByCreationTime: creationTimestamp, then name, then namespace (ascending). */
export function compareByCreation(a: TrafficExtension, b: TrafficExtension): number {
  // A missing timestamp is Go's zero time, which sorts first.
  const ta = a.metadata.creationTimestamp ? Date.parse(a.metadata.creationTimestamp) : Number.NEGATIVE_INFINITY;
  const tb = b.metadata.creationTimestamp ? Date.parse(b.metadata.creationTimestamp) : Number.NEGATIVE_INFINITY;
  if (ta !== tb) return ta < tb ? -1 : 1;
  if (a.metadata.name !== b.metadata.name) return a.metadata.name < b.metadata.name ? -1 : 1;
  if (a.metadata.namespace !== b.metadata.namespace) return a.metadata.namespace < b.metadata.namespace ? -1 : 1;
  return 0;
}

/** Groups extensions by namespace, each group in creation order (istiod's per-namespace index). */
export function indexByNamespace(all: readonly TrafficExtension[]): Map<string, TrafficExtension[]> {
  const index = new Map<string, TrafficExtension[]>();
  for (const te of [...all].sort(compareByCreation)) {
    const list = index.get(te.metadata.namespace);
    if (list) list.push(te);
    else index.set(te.metadata.namespace, [te]);
  }
  return index;
}

/** Namespaces searched for a proxy: its own, the root namespace, then bound services' (deduped). */
export function lookupNamespaces(identity: ProxyIdentity, info: ListenerInfo): string[] {
  const out: string[] = [];
  for (const ns of [identity.namespace, identity.rootNamespace, ...(info.services ?? []).map((s) => s.namespace)]) {
    if (!out.includes(ns)) out.push(ns);
  }
  return out;
}

/**
 * The extensions for one listener/filter chain, by phase, each list in filter-chain order
 * (index 0 is the first decoder filter).
 */
export function extensionsForListener(
  identity: ProxyIdentity,
  info: ListenerInfo,
  chain: ChainType,
  all: readonly TrafficExtension[] | Map<string, TrafficExtension[]>,
  opts: SelectionOptions = {},
): Record<Phase, TrafficExtension[]> {
  const index = all instanceof Map ? all : indexByNamespace(all);
  const byPhase: Record<Phase, TrafficExtension[]> = { AUTHN: [], AUTHZ: [], STATS: [], UNSPECIFIED: [] };
  for (const ns of lookupNamespaces(identity, info)) {
    for (const te of index.get(ns) ?? []) {
      if (matchesChainType(te, chain) && shouldAttach(identity, te, info, opts) && matchTraffic(te.spec.match, info)) {
        byPhase[extensionPhase(te)].push(te);
      }
    }
  }
  // Array.prototype.sort is stable, as Go's sort.SliceStable.
  for (const p of PHASES) byPhase[p].sort((a, b) => extensionPriority(b) - extensionPriority(a));
  return byPhase;
}

/**
 * Every extension that applies anywhere on this proxy, whatever the listener: istiod's whole-proxy
 * query (class Undefined, port 0, all chain types), used for ECDS and to find pull secrets / modules
 * to fetch ahead of listener updates.
 */
export function extensionsForProxy(
  identity: ProxyIdentity,
  all: readonly TrafficExtension[] | Map<string, TrafficExtension[]>,
  services?: readonly BoundService[],
  opts: SelectionOptions = {},
): TrafficExtension[] {
  const info: ListenerInfo = { class: 'Undefined', port: 0 };
  if (services) info.services = services;
  return flattenPhases(extensionsForListener(identity, info, 'ANY', all, opts));
}

/** All applicable extensions flattened in chain order (AUTHN, AUTHZ, STATS, UNSPECIFIED). */
export function flattenPhases(byPhase: Record<Phase, TrafficExtension[]>): TrafficExtension[] {
  return PHASES.flatMap((p) => byPhase[p]);
}

/** The match class of a listener direction. */
export function listenerClassForDirection(direction: TrafficDirection): ListenerClass {
  switch (direction) {
    case 'gateway':
      return 'Gateway';
    case 'sidecar_inbound':
      return 'SidecarInbound';
    case 'sidecar_outbound':
      return 'SidecarOutbound';
  }
}

/**
 * The ListenerInfo istiod would use for one of our listeners. Waypoints are queried as
 * SidecarInbound with port 0 (the quirk that makes `ports` and `mode: CLIENT` never match there).
 */
export function listenerInfoFor(listener: Pick<ListenerConfig, 'direction' | 'port'>, identity: Pick<ProxyIdentity, 'waypoint'>, services?: readonly BoundService[]): ListenerInfo {
  if (identity.waypoint) return { class: 'SidecarInbound', port: 0, services: services ?? [] };
  const info: ListenerInfo = { class: listenerClassForDirection(listener.direction), port: listener.port };
  if (services) info.services = services;
  return info;
}
