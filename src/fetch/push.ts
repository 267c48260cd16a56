/**
 * Publishing a module to an OCI registry in a layout Istio accepts (library side of
 * `meshext push`). Blobs already present are not re-uploaded; the result carries the manifest
 * digest, which is exactly what a TrafficExtension's `sha256` must hold for this image.
 */
import { logger } from '../observability/log.ts';
import type { RegistryCredentials } from './credentials.ts';
import { FetchError, FetchErrorCode } from './errors.ts';
import { buildImage } from './layouts.ts';
import type { Layout } from './layouts.ts';
import { RegistryClient } from './oci.ts';
import { isInsecureHost, parseModuleUrl } from './reference.ts';
import { SsrfGuard } from './ssrf.ts';
import { Transport } from './transport.ts';
import { assertWasm } from './wasm-bytes.ts';

export interface PushOptions {
  wasm: Uint8Array;
  /** `oci://host[:port]/repo:tag` (or without scheme). */
  ref: string;
  layout?: Layout;
  /** Allow plain HTTP / unverified TLS to this registry. */
  insecure?: boolean;
  insecureRegistries?: readonly string[];
  credentials?: RegistryCredentials;
  /** Pushing to a registry on this machine is normal for developers: allowed unless set false. */
  allowLoopback?: boolean;
  blockedCidrs?: readonly string[];
  timeoutMs?: number;
  maxSizeBytes?: number;
}

export interface PushResult {
  /** Normalised reference pushed to. */
  url: string;
  layout: Layout;
  /** `sha256:<hex>` manifest digest. */
  digest: string;
  /** The hex to put in `spec.wasm.sha256`. */
  sha256: string;
  /** The digest-pinned URL (`oci://host/repo@sha256:…`). */
  pinnedUrl: string;
  mediaType: string;
  uploadedBlobs: number;
}

export async function pushModule(o: PushOptions): Promise<PushResult> {
  const parsed = parseModuleUrl(o.ref);
  if (parsed.scheme !== 'oci' || !parsed.oci) {
    throw new FetchError(FetchErrorCode.InvalidUrl, `push needs an oci:// reference, got ${o.ref}`, { url: o.ref, step: 'push' });
  }
  const ref = parsed.oci;
  if (ref.digest) throw new FetchError(FetchErrorCode.InvalidUrl, `push needs a tag, not a digest: ${o.ref}`, { url: o.ref, step: 'push' });
  const maxBytes = o.maxSizeBytes ?? 256 * 1024 * 1024;
  assertWasm(o.wasm, 'the module to push', maxBytes, 'push');
  const layout = o.layout ?? 'oci';
  const image = await buildImage(o.wasm, layout);
  const guard = new SsrfGuard({ allowLoopback: o.allowLoopback !== false, blockedCidrs: o.blockedCidrs ?? [] });
  const transport = new Transport(guard);
  try {
    const client = new RegistryClient({
      ref,
      transport,
      insecure: o.insecure === true || isInsecureHost(o.insecureRegistries ?? [], ref.registry),
      credentials: o.credentials,
      timeoutMs: o.timeoutMs ?? 60_000,
      maxBytes,
      log: logger('fetch'),
      url: parsed.url,
    });
    let uploaded = 0;
    for (const b of image.blobs) {
      if (await client.blobExists(b.digest)) continue;
      await client.uploadBlob(b.digest, b.bytes);
      uploaded++;
    }
    const got = await client.putManifest(ref.tag!, image.mediaType, image.manifest);
    if (got && got !== image.digest) {
      throw new FetchError(FetchErrorCode.Push, `registry stored the manifest as ${got}, expected ${image.digest}`, { url: parsed.url, step: 'push' });
    }
    const sha = image.digest.slice('sha256:'.length);
    return {
      url: parsed.url,
      layout,
      digest: image.digest,
      sha256: sha,
      pinnedUrl: `oci://${ref.registry}/${ref.repository}@${image.digest}`,
      mediaType: image.mediaType,
      uploadedBlobs: uploaded,
    };
  } finally {
    await transport.close();
  }
}
