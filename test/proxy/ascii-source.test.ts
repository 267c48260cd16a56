/**
 * ascii-source.ts: the rewritten sources mean exactly what the originals mean (compared through
 * TypeScript's parser: every string, template, regular expression and identifier), and the
 * worker tree's modules end up Latin-1 (one byte per character in V8).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { asciiSource, hasWideSpace } from '../../src/proxy/ascii-source.ts';

const SRC = resolve(import.meta.dirname, '../../src');

function sources(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) sources(p, out);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const unescape = (s: string) => s.replace(/\\u([0-9a-fA-F]{4})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));

/** What a program observes of its literals and names, in source order. */
function meaning(js: string): string[] {
  const sf = ts.createSourceFile('m.js', js, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  const out: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isStringLiteral(node) || ts.isNumericLiteral(node)) out.push(`lit:${node.text}`);
    else if (ts.isIdentifier(node) || ts.isPrivateIdentifier(node)) out.push(`id:${node.text}`);
    else if (ts.isRegularExpressionLiteral(node)) out.push(`re:${unescape(node.text)}`);
    else if (ts.isNoSubstitutionTemplateLiteral(node) || ts.isTemplateHead(node) || ts.isTemplateMiddle(node) || ts.isTemplateTail(node)) {
      let p: ts.Node = node.parent;
      while (ts.isTemplateSpan(p) || ts.isTemplateExpression(p)) p = p.parent;
      const tagged = ts.isTaggedTemplateExpression(p);
      out.push(`tpl:${node.text}${tagged ? `|raw:${node.rawText}` : ''}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  const diags = (sf as unknown as { parseDiagnostics: unknown[] }).parseDiagnostics;
  if (diags.length) out.push(`syntax errors: ${diags.length}`);
  return out;
}

test('every source file keeps its meaning and loses its wide characters', () => {
  let wide = 0;
  let rewritten = 0;
  for (const f of sources(SRC)) {
    const source = readFileSync(f, 'utf8');
    assert.equal(hasWideSpace(source), false, `${f}: a wide space in the source keeps the file two-byte`);
    const js = stripTypeScriptTypes(source, { mode: 'strip' });
    const out = asciiSource(js);
    if (/[^\x00-\xff]/.test(js)) wide++;
    if (out === null) continue;
    if (out !== js) rewritten++;
    assert.deepEqual(meaning(out), meaning(js), f);
    assert.doesNotMatch(out.replace(/String\.raw`[^`]*`/g, ''), /[^\x00-\xff]/, f);
  }
  // The tree has many files with arrows and dashes in comments: most must be rewritten.
  assert.ok(rewritten >= wide * 0.9 && rewritten > 10, `${rewritten} of ${wide} rewritten`);
});

test('literals, templates, regular expressions and comments', () => {
  const src = [
    "// a → b",
    "/* — */ const s = 'x→y', d = \"≤\";",
    'const t = `a→${s + `→`}b`, r = /[→—]+/u.test(s) ? 1 / 2 : 3;',
    'const raw = String.raw`keep → as is`;',
    'const q = a / b / c; const re = x => /→/g;',
  ].join('\n');
  const out = asciiSource(src)!;
  assert.equal(out.includes('keep → as is'), true);
  assert.equal(/[^\x00-\xff]/.test(out.replace('keep → as is', '')), false);
  assert.deepEqual(meaning(out), meaning(src));
});

test('wide blanks from type stripping become spaces, also where the tokenizer could be wrong', () => {
  // `if (a) /x/...`: the tokenizer takes this regular expression for two divisions.
  const js = stripTypeScriptTypes('let x: Record<string, "→"> = 1; x++ / 2; if (x) /x/.test(String(x as unknown as "→"));\n', { mode: 'strip' });
  assert.match(js, /[\u2000-\u200a]/);
  const out = asciiSource(js)!;
  assert.doesNotMatch(out, /[^\x00-\xff]/);
  assert.deepEqual(meaning(out), meaning(js));
});

test('the unrewritable returns null', () => {
  assert.equal(asciiSource("const s = '\\→';"), null);
  assert.equal(asciiSource('const π→ = 1;'), null);
  assert.equal(asciiSource('plain'), 'plain');
});
