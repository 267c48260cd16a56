/**
 * Byte-level helpers shared by every scheme: the Wasm validity check Istio's agent applies to all
 * fetched modules, best-effort unboxing of gzip/tar wrappers (HTTP modules), and bounded
 * extraction of `plugin.wasm` from an image layer. Every step enforces the size limit on the
 * *output* too, since a small gzip can expand without bound.
 */
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { createTarDecoder } from 'modern-tar';
import { FetchError, FetchErrorCode } from './errors.ts';
import type { FetchStep } from './errors.ts';

export const WASM_MAGIC = Uint8Array.of(0x00, 0x61, 0x73, 0x6d);

export function sha256Hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Istio's isValidWasmBinary: at least 8 bytes (magic + version) and the `\0asm` magic. */
export function isWasm(b: Uint8Array): boolean {
  return b.length >= 8 && b[0] === 0x00 && b[1] === 0x61 && b[2] === 0x73 && b[3] === 0x6d;
}

export function isGzip(b: Uint8Array): boolean {
  return b.length >= 3 && b[0] === 0x1f && b[1] === 0x8b && b[2] === 0x08;
}

/** POSIX/GNU tar: the `ustar` magic at offset 257 of the first header block. */
export function isTar(b: Uint8Array): boolean {
  return b.length >= 512 && b[257] === 0x75 && b[258] === 0x73 && b[259] === 0x74 && b[260] === 0x61 && b[261] === 0x72;
}

export function assertWasm(b: Uint8Array, url: string, maxBytes: number, step: FetchStep = 'verify'): void {
  if (b.length > maxBytes) {
    throw new FetchError(FetchErrorCode.TooLarge, `fetched Wasm binary from ${url} is ${b.length} bytes, over the ${maxBytes}-byte limit`, { url, step });
  }
  if (!isWasm(b)) {
    throw new FetchError(FetchErrorCode.InvalidWasm, `fetched Wasm binary from ${url} is invalid: ${b.length < 8 ? `only ${b.length} bytes` : 'no \\0asm magic'}`, { url, step });
  }
}

export function gunzipLimited(b: Uint8Array, maxBytes: number, url: string, step: FetchStep): Buffer {
  try {
    // maxOutputLength makes zlib stop instead of allocating a decompression bomb.
    return gunzipSync(b, { maxOutputLength: maxBytes });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
      throw new FetchError(FetchErrorCode.TooLarge, `decompressed content from ${url} exceeds the ${maxBytes}-byte limit`, { url, step, cause: err });
    }
    throw new FetchError(FetchErrorCode.InvalidImage, `cannot gunzip content from ${url}: ${(err as Error).message}`, { url, step, cause: err });
  }
}

/**
 * Reads a tar archive and returns the body of the first regular file accepted by `pick`
 * (undefined when none). Entry sizes come from headers, so an oversize entry is refused before
 * its bytes are buffered.
 */
export async function tarFind(tar: Uint8Array, pick: (name: string) => boolean, maxBytes: number, url: string, step: FetchStep): Promise<Uint8Array | undefined> {
  const decoder = createTarDecoder();
  const writer = decoder.writable.getWriter();
  // Feed and close concurrently with reading; the decoder applies backpressure.
  const feeding = writer.write(tar).then(() => writer.close()).catch(() => {});
  let found: Uint8Array | undefined;
  try {
    for await (const entry of decoder.readable) {
      const type = entry.header.type ?? 'file';
      if (found === undefined && type === 'file' && pick(entry.header.name)) {
        if (entry.header.size > maxBytes) {
          await entry.body.cancel();
          throw new FetchError(FetchErrorCode.TooLarge, `${entry.header.name} in the archive from ${url} is ${entry.header.size} bytes, over the ${maxBytes}-byte limit`, { url, step });
        }
        found = new Uint8Array(await new Response(entry.body).arrayBuffer());
      } else {
        await entry.body.cancel();
      }
    }
  } catch (err) {
    if (FetchError.isFetchError(err)) throw err;
    throw new FetchError(FetchErrorCode.InvalidImage, `cannot read the tar archive from ${url}: ${(err as Error).message}`, { url, step, cause: err });
  } finally {
    await feeding;
  }
  return found;
}

/**
 * Istio's unboxIfPossible: while the bytes are not Wasm, gunzip a gzip or take the first file of
 * a tar; anything else is returned as is (the validity check then reports it). Bounded depth so a
 * self-similar archive cannot loop.
 */
export async function unbox(body: Uint8Array, maxBytes: number, url: string): Promise<Uint8Array> {
  let b = body;
  for (let depth = 0; depth < 8; depth++) {
    if (isWasm(b)) return b;
    if (isGzip(b)) {
      b = gunzipLimited(b, maxBytes, url, 'extract');
      continue;
    }
    if (isTar(b)) {
      const first = await tarFind(b, () => true, maxBytes, url, 'extract');
      if (!first) return body;
      b = first;
      continue;
    }
    return b;
  }
  return b;
}
