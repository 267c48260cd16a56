/**
 * On-disk module cache, keyed as Istio's LocalFileCache keys it (spec §3.6):
 *   <dir>/<hex(sha256(moduleName))>/<checksum>.wasm
 * plus the tag map (tagged URL → checksum, and the resourceVersion last seen per resource) that
 * lets IfNotPresent/Always be decided without the network. Unlike Istio's (which dies with the
 * pod) the maps are persisted in <dir>/index.json, so a restart serves modules offline.
 * Every write is tmp + rename, so a crash never leaves a truncated module under a final name.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { StatsStore } from '../observability/stats.ts';
import { isWasm, sha256Hex } from './wasm-bytes.ts';

export interface CacheEntry {
  /** Module name (see reference.ts), '' when adopted from disk without an index. */
  name: string;
  checksum: string;
  /** Absolute path of the module file. */
  path: string;
  /** sha256 of the file content (for OCI the checksum is the manifest digest, not this). */
  fileSha256: string;
  size: number;
  /** ms since epoch of the last Get that used it. */
  lastUsed: number;
}

interface TagEntry {
  checksum: string;
  versions: Record<string, string>;
  /** Wall-clock ms of the last download that set this entry (cross-thread freshness check). */
  fetchedAt?: number;
}

interface IndexFile {
  version: 1;
  modules: Omit<CacheEntry, 'path'>[];
  tags: Record<string, TagEntry>;
}

export interface CacheOptions {
  dir: string;
  /** Unused modules older than this are deleted (Istio WASM_MODULE_EXPIRY, default 24 h). */
  moduleExpiryMs: number;
  /** Purge sweep period (Istio WASM_PURGE_INTERVAL, default 1 h); 0 disables the timer. */
  purgeIntervalMs: number;
  stats?: StatsStore;
  log: Logger;
  now?: () => number;
}

/** Age after which a temp file is a crash leftover rather than a write in progress. */
const STALE_TMP_MS = 10 * 60_000;

export function moduleDirName(moduleName: string): string {
  return sha256Hex(new TextEncoder().encode(moduleName));
}

async function atomicWrite(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fh = await open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export class ModuleCache {
  readonly dir: string;
  readonly #o: CacheOptions;
  /** key: `<dirName>/<checksum>`. */
  readonly #modules = new Map<string, CacheEntry>();
  readonly #tags = new Map<string, TagEntry>();
  /** Checksums this cache deleted (purge/corruption): other writers' index must not bring them back. */
  readonly #removed = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #persisting: Promise<void> = Promise.resolve();
  #dirty = false;

  private constructor(o: CacheOptions) {
    this.dir = o.dir;
    this.#o = o;
  }

  static async open(o: CacheOptions): Promise<ModuleCache> {
    const c = new ModuleCache(o);
    await mkdir(o.dir, { recursive: true });
    await c.#load();
    if (o.purgeIntervalMs > 0) {
      c.#timer = setInterval(() => void c.purge().catch((err) => o.log.warn({ step: 'cache', err: String(err) }, 'cache purge failed')), o.purgeIntervalMs);
      c.#timer.unref();
    }
    return c;
  }

  #now(): number {
    return this.#o.now ? this.#o.now() : Date.now();
  }

  #key(name: string, checksum: string): string {
    return `${moduleDirName(name)}/${checksum}`;
  }

  /** Reads index.json, then reconciles with the files really present (either may be stale). */
  async #load(): Promise<void> {
    let idx: IndexFile | undefined;
    try {
      idx = JSON.parse(await readFile(join(this.dir, 'index.json'), 'utf8')) as IndexFile;
    } catch {
      idx = undefined;
    }
    const known = new Map<string, Omit<CacheEntry, 'path'>>();
    for (const m of idx?.modules ?? []) known.set(`${moduleDirName(m.name)}/${m.checksum}`, m);
    for (const d of await readdir(this.dir, { withFileTypes: true })) {
      if (!d.isDirectory() || !/^[a-f0-9]{64}$/.test(d.name)) continue;
      for (const f of await readdir(join(this.dir, d.name))) {
        const path = join(this.dir, d.name, f);
        if (f.includes('.tmp-')) {
          // Left by a crash mid-write: never a valid module. A recent one may be another worker's
          // write in progress (threads share the directory), so only old ones are removed.
          const st = await stat(path).catch(() => undefined);
          if (st && Date.now() - st.mtimeMs > STALE_TMP_MS) await rm(path, { force: true });
          continue;
        }
        const m = /^([a-f0-9]{64})\.wasm$/.exec(f);
        if (!m) continue;
        const key = `${d.name}/${m[1]}`;
        const k = known.get(key);
        if (k) {
          this.#modules.set(key, { ...k, path });
        } else {
          const st = await stat(path);
          const bytes = await readFile(path);
          this.#modules.set(key, { name: '', checksum: m[1]!, path, fileSha256: sha256Hex(bytes), size: st.size, lastUsed: st.mtimeMs });
        }
      }
    }
    for (const [url, t] of Object.entries(idx?.tags ?? {})) this.#tags.set(url, { ...t, versions: { ...t.versions } });
    this.#gauge();
    this.#o.log.debug({ step: 'cache', dir: this.dir, modules: this.#modules.size, tags: this.#tags.size }, 'module cache opened');
  }

  #gauge(): void {
    this.#o.stats?.gauge('wasm_cache_entries').set(this.#modules.size);
  }

  #markDirty(): void {
    this.#dirty = true;
    this.#persisting = this.#persisting.then(async () => {
      if (!this.#dirty) return;
      this.#dirty = false;
      // Other workers write the same index: merge their newer news first so last-writer-wins
      // does not drop it (their modules stay on disk either way; only tag knowledge is at stake).
      await this.reload().catch(() => {});
      const idx: IndexFile = {
        version: 1,
        modules: [...this.#modules.values()].map(({ path: _p, ...rest }) => rest),
        tags: Object.fromEntries(this.#tags),
      };
      try {
        await atomicWrite(join(this.dir, 'index.json'), JSON.stringify(idx));
      } catch (err) {
        this.#o.log.warn({ step: 'cache', dir: this.dir, err: String(err) }, 'cannot persist the cache index');
      }
    });
  }

  /** Resolves when the index reflects every change made so far. */
  flush(): Promise<void> {
    return this.#persisting;
  }

  /**
   * Istio's getEntry. Without an expected checksum, the tag map supplies one when the policy
   * ignores resource versions or this resource's version is unchanged; the version is recorded
   * either way (even if the fetch that follows fails, as Istio does). Counts wasm_cache_lookup_count.
   */
  lookup(q: { url: string; name: string; checksum: string | undefined; resource: string; version: string; ignoreVersion: boolean; count?: boolean }): { entry: CacheEntry | undefined; checksum: string | undefined } {
    let checksum = q.checksum;
    if (!checksum) {
      const t = this.#tags.get(q.url);
      if (t) {
        if (q.ignoreVersion || t.versions[q.resource] === q.version) checksum = t.checksum;
        if (t.versions[q.resource] !== q.version) {
          t.versions[q.resource] = q.version;
          this.#markDirty();
        }
      }
    }
    const entry = checksum ? this.#modules.get(this.#key(q.name, checksum)) : undefined;
    if (entry) {
      entry.lastUsed = this.#now();
      this.#markDirty();
    }
    if (q.count !== false) this.#o.stats?.counter('wasm_cache_lookup_count', { hit: String(entry !== undefined) }).inc();
    return { entry, checksum };
  }

  /** A module by (name, checksum) without lookup accounting (used after a manifest resolves). */
  get(name: string, checksum: string): CacheEntry | undefined {
    return this.#modules.get(this.#key(name, checksum));
  }

  /** The module bytes, or undefined (and the entry dropped) when the file is gone or corrupted. */
  async read(e: CacheEntry): Promise<Uint8Array | undefined> {
    let bytes: Buffer;
    try {
      bytes = await readFile(e.path);
    } catch {
      this.#drop(e, 'file missing');
      return undefined;
    }
    if (!isWasm(bytes) || sha256Hex(bytes) !== e.fileSha256) {
      this.#drop(e, 'file corrupted');
      await rm(e.path, { force: true });
      return undefined;
    }
    return bytes;
  }

  #drop(e: CacheEntry, why: string): void {
    this.#o.log.warn({ step: 'cache', path: e.path, reason: why }, 'dropping a cached module');
    // Entries adopted from disk have no name, so find the key by identity.
    for (const [k, v] of this.#modules) if (v === e) this.#modules.delete(k);
    this.#removed.add(e.checksum);
    this.#gauge();
    this.#markDirty();
  }

  /** Istio's addEntry: writes the module once (atomically), records URL → checksum for the resource. */
  async add(q: { url: string; name: string; checksum: string; bytes: Uint8Array; resource: string; version: string }): Promise<CacheEntry> {
    const key = this.#key(q.name, q.checksum);
    this.#removed.delete(q.checksum);
    let e = this.#modules.get(key);
    if (!e) {
      const dir = join(this.dir, moduleDirName(q.name));
      await mkdir(dir, { recursive: true });
      const path = join(dir, `${q.checksum}.wasm`);
      await atomicWrite(path, q.bytes);
      e = { name: q.name, checksum: q.checksum, path, fileSha256: sha256Hex(q.bytes), size: q.bytes.length, lastUsed: this.#now() };
      this.#modules.set(key, e);
      this.#gauge();
    } else {
      // Known entry: make sure the file is still there (another worker's purge may have removed it).
      const st = await stat(e.path).catch(() => undefined);
      if (!st) {
        await mkdir(join(this.dir, moduleDirName(q.name)), { recursive: true });
        await atomicWrite(e.path, q.bytes);
        e.fileSha256 = sha256Hex(q.bytes);
        e.size = q.bytes.length;
      }
      e.lastUsed = this.#now();
      if (!e.name) e.name = q.name;
    }
    this.recordTag(q.url, q.checksum, q.resource, q.version);
    return e;
  }

  recordTag(url: string, checksum: string, resource: string, version: string): void {
    let t = this.#tags.get(url);
    if (!t) {
      t = { checksum, versions: {} };
      this.#tags.set(url, t);
    }
    t.checksum = checksum;
    t.versions[resource] = version;
    t.fetchedAt = Date.now();
    this.#markDirty();
  }

  /** The tag entry for a URL (read-only view). */
  tag(url: string): Readonly<TagEntry> | undefined {
    return this.#tags.get(url);
  }

  /** Deletes modules unused for longer than the expiry, with the tag entries that point at them. */
  async purge(): Promise<number> {
    const cutoff = this.#now() - this.#o.moduleExpiryMs;
    let removed = 0;
    for (const [key, e] of this.#modules) {
      if (e.lastUsed > cutoff) continue;
      this.#modules.delete(key);
      this.#removed.add(e.checksum);
      removed++;
      await rm(e.path, { force: true });
      for (const [url, t] of this.#tags) if (t.checksum === e.checksum) this.#tags.delete(url);
      this.#o.log.info({ step: 'cache', path: e.path, module: e.name, checksum: e.checksum, unusedForMs: this.#now() - e.lastUsed }, 'expired module removed from the cache');
    }
    if (removed > 0) {
      this.#gauge();
      this.#markDirty();
    }
    return removed;
  }

  /**
   * Merges what another fetcher (worker thread or process) sharing this directory has written:
   * its tag entries and the modules its index names. Used after waiting on a download lock.
   */
  async reload(opts: { modules?: boolean } = {}): Promise<void> {
    let idx: IndexFile;
    try {
      idx = JSON.parse(await readFile(join(this.dir, 'index.json'), 'utf8')) as IndexFile;
    } catch {
      return;
    }
    for (const m of opts.modules === false ? [] : (idx.modules ?? [])) {
      const key = `${moduleDirName(m.name)}/${m.checksum}`;
      if (this.#modules.has(key) || this.#removed.has(m.checksum)) continue;
      const path = join(this.dir, moduleDirName(m.name), `${m.checksum}.wasm`);
      try {
        await stat(path);
      } catch {
        continue;
      }
      this.#modules.set(key, { ...m, path });
    }
    for (const [url, t] of Object.entries(idx.tags ?? {})) {
      if (this.#removed.has(t.checksum)) continue;
      const mine = this.#tags.get(url);
      if (!mine) this.#tags.set(url, { ...t, versions: { ...t.versions } });
      else if ((t.fetchedAt ?? 0) > (mine.fetchedAt ?? 0)) {
        mine.checksum = t.checksum;
        mine.fetchedAt = t.fetchedAt;
        Object.assign(mine.versions, t.versions);
      }
    }
    this.#gauge();
  }

  /**
   * A cross-thread/cross-process download lock (O_EXCL file in <dir>/locks), so N worker threads
   * starting on a cold cache pull a module once, not N times. `waited` tells the caller another
   * holder ran first (reload and look again). A holder that died is taken over after `staleMs`.
   */
  async lock(key: string, staleMs: number, signal?: AbortSignal): Promise<{ waited: boolean; release(): Promise<void> }> {
    const dir = join(this.dir, 'locks');
    await mkdir(dir, { recursive: true });
    const path = join(dir, `${sha256Hex(new TextEncoder().encode(key))}.lock`);
    let waited = false;
    for (;;) {
      try {
        const fh = await open(path, 'wx');
        await fh.writeFile(`${process.pid}\n`);
        await fh.close();
        return {
          waited,
          release: async () => {
            // The index must show the new module before anyone waiting looks at it.
            await this.flush();
            await rm(path, { force: true });
          },
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      waited = true;
      try {
        const st = await stat(path);
        if (Date.now() - st.mtimeMs > staleMs) {
          this.#o.log.warn({ step: 'cache', lock: path }, 'taking over a stale download lock');
          await rm(path, { force: true });
          continue;
        }
      } catch {
        continue;
      }
      if (signal?.aborted) throw signal.reason;
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  get size(): number {
    return this.#modules.size;
  }

  entries(): CacheEntry[] {
    return [...this.#modules.values()].map((e) => ({ ...e }));
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }
}
