/**
 * The three image layouts Istio's agent accepts (spec §3.3), both directions: extracting the
 * module from a pulled manifest, and building one for `meshext push`. Images built here are
 * deterministic (fixed tar mtime, gzip without timestamp) so pushing the same module twice yields
 * the same manifest digest.
 */
import { gzipSync } from 'node:zlib';
import { packTar } from 'modern-tar';
import { FetchError, FetchErrorCode } from './errors.ts';
import { gunzipLimited, sha256Hex, tarFind } from './wasm-bytes.ts';

export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  OciLayerTarGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  WasmContentLayer: 'application/vnd.module.wasm.content.layer.v1+wasm',
  WasmConfig: 'application/vnd.module.wasm.config.v1+json',
} as const;

/** Accept list for manifest GETs: both image manifest kinds and both index kinds. */
export const MANIFEST_ACCEPT = [MediaType.OciManifest, MediaType.DockerManifest, MediaType.OciIndex, MediaType.DockerManifestList].join(', ');

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
  annotations?: Record<string, string>;
}

export interface ImageManifest {
  schemaVersion?: number;
  mediaType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: Descriptor[];
  annotations?: Record<string, string>;
}

export type Layout = 'oci' | 'docker' | 'artifact';
export const LAYOUTS: readonly Layout[] = ['oci', 'docker', 'artifact'];

export interface BuiltBlob {
  mediaType: string;
  digest: string;
  bytes: Uint8Array;
}

export interface BuiltImage {
  mediaType: string;
  manifest: Uint8Array;
  /** `sha256:<hex>` of the manifest bytes: what Istio compares `sha256` with. */
  digest: string;
  blobs: BuiltBlob[];
}

function blob(mediaType: string, bytes: Uint8Array): BuiltBlob {
  return { mediaType, digest: `sha256:${sha256Hex(bytes)}`, bytes };
}

function desc(b: BuiltBlob): Descriptor {
  return { mediaType: b.mediaType, digest: b.digest, size: b.bytes.length };
}

/** A single-layer `FROM scratch` + `COPY plugin.wasm ./` image, as Istio's build guide makes them. */
async function compatLayer(wasm: Uint8Array): Promise<{ tar: Uint8Array; gz: Uint8Array }> {
  const tar = await packTar([
    { header: { name: 'plugin.wasm', size: wasm.length, type: 'file', mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 }, body: wasm },
  ]);
  return { tar, gz: new Uint8Array(gzipSync(tar, { level: 9 })) };
}

export async function buildImage(wasm: Uint8Array, layout: Layout): Promise<BuiltImage> {
  let manifest: ImageManifest;
  let blobs: BuiltBlob[];
  let mediaType: string;
  if (layout === 'artifact') {
    // solo-io "oci" variant: Istio wants exactly two layers, one being the raw module.
    const cfg = blob(MediaType.WasmConfig, new TextEncoder().encode(JSON.stringify({ type: 'envoy_proxy', abi_version: 'v0-097b7f2e4cc1fb490cc1943d0d633655ac3c522f', config: { root_ids: [] } })));
    const content = blob(MediaType.WasmContentLayer, wasm);
    mediaType = MediaType.OciManifest;
    blobs = [cfg, content];
    manifest = { schemaVersion: 2, mediaType, config: desc(cfg), layers: [desc(cfg), desc(content)] };
  } else {
    const { tar, gz } = await compatLayer(wasm);
    const docker = layout === 'docker';
    const layer = blob(docker ? MediaType.DockerLayer : MediaType.OciLayerTarGzip, gz);
    const config = blob(
      docker ? MediaType.DockerConfig : MediaType.OciConfig,
      new TextEncoder().encode(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [`sha256:${sha256Hex(tar)}`] } })),
    );
    mediaType = docker ? MediaType.DockerManifest : MediaType.OciManifest;
    blobs = [config, layer];
    manifest = { schemaVersion: 2, mediaType, config: desc(config), layers: [desc(layer)] };
    if (!docker) manifest.annotations = { 'module.wasm.image/variant': 'compat' };
  }
  const bytes = new TextEncoder().encode(JSON.stringify(manifest));
  return { mediaType, manifest: bytes, digest: `sha256:${sha256Hex(bytes)}`, blobs };
}

/** Blob reader handed to `extractModule` (verifies the digest, enforces the size limit). */
export type BlobReader = (d: Descriptor) => Promise<Uint8Array>;

const isPluginWasm = (name: string): boolean => name.replace(/\/+$/, '').split('/').pop() === 'plugin.wasm';

/**
 * Istio's extraction order: a Docker v2 manifest must be the compat variant; an OCI manifest is
 * tried as compat (last layer tar+gzip holding plugin.wasm), then as the artifact variant.
 */
export async function extractModule(manifest: ImageManifest, mediaType: string, readBlob: BlobReader, maxBytes: number, url: string): Promise<Uint8Array> {
  const layers = manifest.layers ?? [];
  const invalid = (why: string): FetchError =>
    new FetchError(FetchErrorCode.InvalidImage, `the given image ${url} is in invalid format as an OCI image: ${why}`, { url, step: 'extract' });
  const compat = async (want: string): Promise<Uint8Array> => {
    const last = layers.at(-1);
    if (!last) throw invalid('the image has no layers');
    if (last.mediaType !== want) throw invalid(`the last layer has media type ${last.mediaType}, want ${want}`);
    const gz = await readBlob(last);
    const tar = gunzipLimited(gz, maxBytes, url, 'extract');
    const found = await tarFind(tar, isPluginWasm, maxBytes, url, 'extract');
    if (!found) throw invalid('plugin.wasm not found in the last layer');
    return found;
  };
  if (mediaType === MediaType.DockerManifest) return compat(MediaType.DockerLayer);
  if (mediaType !== MediaType.OciManifest) throw invalid(`unsupported manifest media type ${mediaType || '(none)'}`);
  let compatErr: FetchError;
  try {
    return await compat(MediaType.OciLayerTarGzip);
  } catch (err) {
    // Transport/size/digest failures are real failures, not a hint to try the other layout.
    if (!FetchError.isFetchError(err) || err.code !== FetchErrorCode.InvalidImage) throw err;
    compatErr = err;
  }
  if (layers.length !== 2) throw invalid(`${compatErr.message.replace(/^.*OCI image: /, '')}; and as the artifact variant: number of layers must be 2 but got ${layers.length}`);
  const content = layers.find((l) => l.mediaType === MediaType.WasmContentLayer);
  if (!content) throw invalid(`${compatErr.message.replace(/^.*OCI image: /, '')}; and no ${MediaType.WasmContentLayer} layer`);
  return readBlob(content);
}
