/**
 * Registry credentials from docker config JSON (the `.dockerconfigjson` of a
 * `kubernetes.io/dockerconfigjson` Secret, or a local ~/.docker/config.json): `auths[registry]`
 * with `auth` (base64 user:pass), `username`/`password`, or `identitytoken` (OAuth2 refresh token).
 */
import { readFileSync } from 'node:fs';
import { FetchError, FetchErrorCode } from './errors.ts';

export interface RegistryCredentials {
  username?: string;
  password?: string;
  /** OAuth2 refresh token, exchanged at the bearer realm (docker's identitytoken). */
  identityToken?: string;
  /** A pre-issued registry bearer token (docker's registrytoken). */
  registryToken?: string;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
  registrytoken?: string;
}

const DOCKER_HUB_KEYS = ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'];

/** Normalises a docker config `auths` key (`https://host/v1/`, `host:port`, …) to `host[:port]`. */
function keyHost(key: string): string {
  let k = key.trim().toLowerCase();
  k = k.replace(/^[a-z]+:\/\//, '');
  const slash = k.indexOf('/');
  return slash >= 0 ? k.slice(0, slash) : k;
}

/**
 * Parses docker config JSON. Throws FetchError(InvalidPullSecret) on malformed input, so a bad
 * secret fails the fetch instead of silently degrading to anonymous.
 */
export function parseDockerConfig(json: string, what: string, url: string): Map<string, RegistryCredentials> {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    throw new FetchError(FetchErrorCode.InvalidPullSecret, `${what} is not valid docker config JSON: ${(err as Error).message}`, { url, step: 'secret', cause: err });
  }
  const auths = (doc as { auths?: Record<string, AuthEntry> } | null)?.auths ?? (doc as Record<string, AuthEntry> | null);
  if (!auths || typeof auths !== 'object') {
    throw new FetchError(FetchErrorCode.InvalidPullSecret, `${what} has no "auths" object`, { url, step: 'secret' });
  }
  const out = new Map<string, RegistryCredentials>();
  for (const [key, entry] of Object.entries(auths)) {
    if (!entry || typeof entry !== 'object') continue;
    const c: RegistryCredentials = {};
    if (entry.auth) {
      const dec = Buffer.from(entry.auth, 'base64').toString('utf8');
      const i = dec.indexOf(':');
      if (i < 0) throw new FetchError(FetchErrorCode.InvalidPullSecret, `${what}: auths["${key}"].auth is not base64 of user:password`, { url, step: 'secret' });
      c.username = dec.slice(0, i);
      c.password = dec.slice(i + 1);
    }
    if (entry.username) c.username = entry.username;
    if (entry.password) c.password = entry.password;
    if (entry.identitytoken) c.identityToken = entry.identitytoken;
    if (entry.registrytoken) c.registryToken = entry.registrytoken;
    out.set(keyHost(key), c);
  }
  return out;
}

/** Credentials for `registry` (host[:port]); Docker Hub names map to each other. Undefined = anonymous. */
export function credentialsFor(auths: Map<string, RegistryCredentials>, registry: string): RegistryCredentials | undefined {
  const host = registry.toLowerCase();
  const direct = auths.get(host);
  if (direct) return isEmpty(direct) ? undefined : direct;
  if (DOCKER_HUB_KEYS.map(keyHost).includes(host)) {
    for (const k of DOCKER_HUB_KEYS) {
      const c = auths.get(keyHost(k));
      if (c) return isEmpty(c) ? undefined : c;
    }
  }
  return undefined;
}

function isEmpty(c: RegistryCredentials): boolean {
  return !c.username && !c.password && !c.identityToken && !c.registryToken;
}

/** Reads a docker config file for the default keychain (no imagePullSecret); missing file = anonymous. */
export function loadDockerConfigFile(path: string): Map<string, RegistryCredentials> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return new Map();
  }
  return parseDockerConfig(text, `docker config ${path}`, path);
}

/** Builds a `.dockerconfigjson` document (for push --username/--password and for tests). */
export function dockerConfigJson(registry: string, username: string, password: string): string {
  return JSON.stringify({ auths: { [registry]: { auth: Buffer.from(`${username}:${password}`).toString('base64') } } });
}
