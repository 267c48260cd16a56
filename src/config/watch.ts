/**
 * Watches extension files and directories and reloads them when their content changes.
 *
 * - Files are watched through their parent directory, so editors that save by writing a temp file
 *   and renaming it over the original (vim, many IDEs) keep being followed.
 * - Directories are watched recursively; a path that does not exist yet is watched through its
 *   nearest existing ancestor until it appears.
 * - Events are debounced, then everything is re-read and hashed: identical content (a `touch`, a
 *   save without edits) does not fire.
 * - A file that disappears is given a grace period before the removal is reported, because
 *   rename-on-save briefly leaves no file at all.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, watch } from 'node:fs';
import type { Dirent, FSWatcher } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { collectExtensionFiles, loadExtensionSources } from './extensions.ts';
import type { ExtensionLoadOptions, ExtensionLoadResult, SourceText } from './extensions.ts';

export interface WatchOptions extends ExtensionLoadOptions {
  /** Quiet time after the last event before reloading (default 100 ms). */
  debounceMs?: number;
  /** How long a vanished file may stay missing before its removal is reported (default 250 ms). */
  missingGraceMs?: number;
  /** Resolve relative paths against this directory (default: the current directory). */
  baseDir?: string;
  /** Called with unexpected watcher errors (the watcher re-arms itself). */
  onError?: (err: Error) => void;
}

export interface ExtensionWatcher {
  /** The last loaded result (the initial load happens synchronously in watchExtensions). */
  readonly current: ExtensionLoadResult;
  /** Re-reads now (still debounced); fires onChange only if the content changed. */
  refresh(): void;
  close(): void;
}

interface Snapshot {
  hash: string;
  sources: SourceText[];
  /** Problems reaching the paths (missing, unreadable), part of the hash. */
  pathIssues: ExtensionLoadResult['issues'];
  files: Set<string>;
}

function takeSnapshot(paths: readonly string[]): Snapshot {
  const { files, issues } = collectExtensionFiles(paths);
  const sources: SourceText[] = [];
  const h = createHash('sha256');
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue; // vanished after the listing; the next event will catch up
    }
    sources.push({ file: f, text });
    h.update(f).update('\0').update(text).update('\0');
  }
  for (const i of issues) h.update(`!${i.file}\0${i.message}\0`);
  return { hash: h.digest('hex'), sources, pathIssues: issues, files: new Set(sources.map((s) => s.file)) };
}

/** What to watch for one configured path: itself (dir, recursive), its parent (file), or an ancestor. */
/** The directory and every directory below it. */
function directoriesUnder(root: string): string[] {
  const out = [root];
  for (let i = 0; i < out.length; i++) {
    let entries: Dirent[];
    try {
      entries = readdirSync(out[i]!, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) if (e.isDirectory()) out.push(resolve(out[i]!, e.name));
  }
  return out;
}

function watchTarget(p: string): { dir: string; recursive: boolean } | null {
  try {
    const st = statSync(p);
    if (st.isDirectory()) return { dir: p, recursive: true };
    return { dir: dirname(p), recursive: false };
  } catch {
    let d = dirname(p);
    while (!existsSync(d)) {
      const up = dirname(d);
      if (up === d) return null;
      d = up;
    }
    return { dir: d, recursive: false };
  }
}

export function watchExtensions(
  paths: readonly string[],
  onChange: (result: ExtensionLoadResult) => void,
  opts: WatchOptions = {},
): ExtensionWatcher {
  const abs = paths.map((p) => resolve(opts.baseDir ?? process.cwd(), p));
  const debounceMs = opts.debounceMs ?? 100;
  const graceMs = opts.missingGraceMs ?? 250;
  const loadOpts: ExtensionLoadOptions = opts.defaultNamespace !== undefined ? { defaultNamespace: opts.defaultNamespace } : {};

  let snap = takeSnapshot(abs);
  let current = withPathIssues(loadExtensionSources(snap.sources, loadOpts), snap);
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let graceUntil = 0;
  const watchers = new Map<string, FSWatcher>();

  const schedule = (ms = debounceMs): void => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(reload, ms);
  };

  // Events for names that cannot affect the result (siblings of a watched file) are ignored.
  const relevant = (dir: string, recursive: boolean, name: string | null): boolean => {
    if (recursive || name === null) return true;
    const full = resolve(dir, name);
    return abs.some((p) => p === full || p.startsWith(`${full}/`) || full.startsWith(`${p}/`));
  };

  function arm(): void {
    const wanted = new Map<string, { dir: string; recursive: boolean }>();
    for (const p of abs) {
      const t = watchTarget(p);
      if (!t) continue;
      if (t.recursive) {
        // Node's recursive fs.watch on Linux stops reporting a file after it is replaced by a
        // rename (how editors and atomic writers save); a plain inotify watch per directory of
        // the tree reports every rename reliably.
        for (const d of directoriesUnder(t.dir)) {
          wanted.set(`r:${d}`, { dir: d, recursive: true });
          wanted.delete(`f:${d}`);
        }
      } else if (!wanted.has(`r:${t.dir}`)) {
        wanted.set(`f:${t.dir}`, t);
      }
    }
    for (const [key, w] of watchers) {
      if (!wanted.has(key)) {
        w.close();
        watchers.delete(key);
      }
    }
    for (const [key, t] of wanted) {
      if (watchers.has(key)) continue;
      try {
        const w = watch(t.dir, { recursive: false }, (_event, name) => {
          if (relevant(t.dir, t.recursive, name === null ? null : String(name))) schedule();
        });
        w.on('error', (err) => {
          // Typically the watched directory was removed: drop it and re-arm after a reload.
          w.close();
          watchers.delete(key);
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'EPERM') opts.onError?.(err);
          schedule();
        });
        watchers.set(key, w);
      } catch (err) {
        // The directory vanished between the check and the watch; try again shortly.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') opts.onError?.(err as Error);
        schedule(debounceMs * 2);
      }
    }
  }

  function reload(): void {
    timer = undefined;
    if (closed) return;
    const next = takeSnapshot(abs);
    if (next.hash !== snap.hash) {
      const lost = [...snap.files].some((f) => !next.files.has(f));
      const now = Date.now();
      if (lost && graceUntil === 0) {
        // Maybe a rename-on-save in progress: look again after the grace period.
        graceUntil = now + graceMs;
        arm();
        schedule(graceMs);
        return;
      }
      graceUntil = 0;
      snap = next;
      current = withPathIssues(loadExtensionSources(next.sources, loadOpts), next);
      arm();
      try {
        onChange(current);
      } catch (err) {
        opts.onError?.(err as Error);
      }
      return;
    }
    graceUntil = 0;
    arm();
  }

  arm();

  return {
    get current() {
      return current;
    },
    refresh() {
      schedule();
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      for (const w of watchers.values()) w.close();
      watchers.clear();
    },
  };
}

function withPathIssues(r: ExtensionLoadResult, snap: Snapshot): ExtensionLoadResult {
  return { ...r, issues: [...snap.pathIssues, ...r.issues], files: snap.sources.map((s) => s.file) };
}
