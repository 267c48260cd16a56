/** The extension watcher: fires on real changes only, survives rename-on-save and missing paths. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { ExtensionLoadResult } from '../../src/config/extensions.ts';
import { watchExtensions } from '../../src/config/watch.ts';
import type { ExtensionWatcher } from '../../src/config/watch.ts';
import { names, sleep, waitFor } from './helpers.ts';

const doc = (name: string, code = 'x') =>
  `apiVersion: extensions.istio.io/v1alpha1\nkind: TrafficExtension\nmetadata:\n  name: ${name}\nspec:\n  lua:\n    inlineCode: "${code}"\n`;

// Short timings keep the suite fast; the quiet periods below are several times longer.
const OPTS = { debounceMs: 40, missingGraceMs: 120 };
const QUIET = 400;

describe('watchExtensions', { timeout: 20_000 }, () => {
  let dir: string;
  let watcher: ExtensionWatcher | undefined;
  let events: ExtensionLoadResult[];
  const onChange = (r: ExtensionLoadResult) => events.push(r);

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'meshext-watch-'));
    events = [];
  });
  afterEach(() => {
    watcher?.close();
    watcher = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('loads synchronously at start and fires on a content change', async () => {
    const f = join(dir, 'ext.yaml');
    writeFileSync(f, doc('a'));
    watcher = watchExtensions([f], onChange, OPTS);
    assert.deepEqual(names(watcher.current.set.extensions), ['a']);
    writeFileSync(f, doc('a', 'y'));
    await waitFor(() => events.length === 1, 3000, 'a change event');
    assert.equal(events[0]!.set.extensions[0]!.spec.lua!.inlineCode, 'y');
    assert.equal(watcher.current, events[0]);
    await sleep(QUIET);
    assert.equal(events.length, 1, 'one burst of writes is one event');
  });

  it('does not fire when the same content is written again', async () => {
    const f = join(dir, 'ext.yaml');
    writeFileSync(f, doc('a'));
    watcher = watchExtensions([f], onChange, OPTS);
    writeFileSync(f, doc('a'));
    writeFileSync(f, doc('a'));
    await sleep(QUIET);
    assert.equal(events.length, 0);
    // ...but a real change afterwards still fires (the watcher is alive).
    writeFileSync(f, doc('b'));
    await waitFor(() => events.length === 1);
    assert.deepEqual(names(events[0]!.set.extensions), ['b']);
  });

  it('follows rename-on-save (write a temp file, rename it over the original) with one event', async () => {
    const f = join(dir, 'ext.yaml');
    writeFileSync(f, doc('a'));
    watcher = watchExtensions([f], onChange, OPTS);
    for (const code of ['1', '2']) {
      const tmp = join(dir, `.ext.yaml.${code}.tmp`);
      writeFileSync(tmp, doc('a', code));
      renameSync(tmp, f);
      await waitFor(() => events.length >= Number(code), 3000, `event ${code}`);
      assert.equal(events.at(-1)!.set.extensions[0]!.spec.lua!.inlineCode, code);
    }
    await sleep(QUIET);
    assert.equal(events.length, 2);
  });

  it('does not report a file that is only briefly missing (delete + recreate)', async () => {
    const f = join(dir, 'ext.yaml');
    writeFileSync(f, doc('a'));
    watcher = watchExtensions([f], onChange, OPTS);
    unlinkSync(f);
    await sleep(OPTS.debounceMs + 30);
    writeFileSync(f, doc('a'));
    await sleep(QUIET);
    assert.equal(events.length, 0, 'same content back within the grace period: no event');
  });

  it('reports a removal that lasts', async () => {
    const f = join(dir, 'ext.yaml');
    writeFileSync(f, doc('a'));
    watcher = watchExtensions([f], onChange, OPTS);
    unlinkSync(f);
    await waitFor(() => events.length === 1);
    assert.deepEqual(events[0]!.set.extensions, []);
    assert.equal(events[0]!.issues[0]!.message, 'the path does not exist');
  });

  it('watches directories recursively: add, change and remove files in subdirectories', async () => {
    mkdirSync(join(dir, 'exts'));
    writeFileSync(join(dir, 'exts/a.yaml'), doc('a'));
    watcher = watchExtensions([join(dir, 'exts')], onChange, OPTS);
    mkdirSync(join(dir, 'exts/team'));
    writeFileSync(join(dir, 'exts/team/b.yaml'), doc('b'));
    await waitFor(() => events.length >= 1 && names(events.at(-1)!.set.extensions).includes('b'), 3000, 'b added');
    assert.deepEqual(names(events.at(-1)!.set.extensions), ['a', 'b']);
    const n = events.length;
    writeFileSync(join(dir, 'exts/notes.txt'), 'ignored');
    await sleep(QUIET);
    assert.equal(events.length, n, 'non-YAML files do not matter');
    unlinkSync(join(dir, 'exts/a.yaml'));
    await waitFor(() => names(events.at(-1)!.set.extensions).join() === 'b', 3000, 'a removed');
  });

  it('picks up a path that does not exist yet', async () => {
    const f = join(dir, 'later/ext.yaml');
    watcher = watchExtensions([f], onChange, OPTS);
    assert.equal(watcher.current.issues[0]!.message, 'the path does not exist');
    mkdirSync(join(dir, 'later'));
    writeFileSync(f, doc('late'));
    await waitFor(() => events.length >= 1 && names(events.at(-1)!.set.extensions).includes('late'), 3000, 'late file');
  });

  it('ignores sibling files of a watched file', async () => {
    const f = join(dir, 'ext.yaml');
    writeFileSync(f, doc('a'));
    watcher = watchExtensions([f], onChange, OPTS);
    writeFileSync(join(dir, 'other.yaml'), doc('other'));
    await sleep(QUIET);
    assert.equal(events.length, 0);
  });

  it('survives its watched directory being deleted and recreated', async () => {
    const exts = join(dir, 'exts');
    mkdirSync(exts);
    writeFileSync(join(exts, 'a.yaml'), doc('a'));
    watcher = watchExtensions([exts], onChange, OPTS);
    rmSync(exts, { recursive: true });
    await waitFor(() => events.length === 1, 3000, 'removal');
    assert.deepEqual(events[0]!.set.extensions, []);
    mkdirSync(exts);
    writeFileSync(join(exts, 'b.yaml'), doc('b'));
    await waitFor(() => events.length >= 2 && names(events.at(-1)!.set.extensions).join() === 'b', 3000, 'recreated directory');
    writeFileSync(join(exts, 'b.yaml'), doc('b', 'changed'));
    await waitFor(() => events.at(-1)!.set.extensions[0]?.spec.lua?.inlineCode === 'changed', 3000, 'change in the recreated directory');
  });

  it('stops after close()', async () => {
    const f = join(dir, 'ext.yaml');
    writeFileSync(f, doc('a'));
    watcher = watchExtensions([f], onChange, OPTS);
    watcher.close();
    writeFileSync(f, doc('b'));
    await sleep(QUIET);
    assert.equal(events.length, 0);
  });

  it('reports validation problems of the new content', async () => {
    const f = join(dir, 'ext.yaml');
    writeFileSync(f, doc('a'));
    watcher = watchExtensions([f], onChange, { ...OPTS, defaultNamespace: 'team' });
    assert.equal(watcher.current.set.extensions[0]!.metadata.namespace, 'team');
    writeFileSync(f, doc('a').replace('lua:', 'luaa:'));
    await waitFor(() => events.length === 1);
    assert.deepEqual(events[0]!.set.extensions, []);
    assert.equal(events[0]!.issues.find((i) => i.level === 'error')!.path, 'spec.luaa');
  });
});
