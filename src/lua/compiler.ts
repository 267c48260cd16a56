/**
 * The compiled tier: scripts inside a small, statically checked subset of Lua are translated to
 * JavaScript and run in V8 with no crossing into a Lua engine (see docs/lua.md, "Compiled tier").
 *
 * The subset is chosen so that a compiled hook can never behave differently from LuaJIT in a way
 * a script could observe, and can never run away:
 * - the chunk holds only the two hook functions and `local` constants (literals);
 * - hooks have no loops, no function definitions and call only known built-ins and handle
 *   methods, so every run is bounded by the script's length (no instruction budget needed);
 * - hooks never assign upvalues or globals, so no value (handle objects included) outlives its
 *   hook, and there is no yield: objects cannot be used "outside of proper scope";
 * - anything else (loops, closures, body(), httpCall(), unknown globals or methods) makes
 *   the whole script ineligible, and it runs on LuaJIT as before. compileLua() says why.
 *
 * Lua's semantics are kept where the subset reaches them: only nil and false are false, floored
 * `%`, string coercion in arithmetic, `..` formatting numbers as "%.14g", byte strings (latin1 JS
 * strings, as the other engines exchange them), "no value" versus nil in call arguments (a header
 * get() that finds nothing returns no value, and tonumber() of no value raises, as in Envoy), and
 * LuaJIT's error messages with the script's line.
 *
 * The parser is luaparse (npm): the Lua grammar is a solved problem; the translation is ours.
 */
import { createRequire } from 'node:module';
import type * as L from 'luaparse';
import { quickOutside } from './subset.ts';

/**
 * luaparse is loaded on the first script that passes the quick check below: a worker whose Lua
 * scripts all loop (the usual reason to stay on LuaJIT) never loads the parser, which would cost
 * it about 0.7 MiB (measured in the bench's per-worker memory slope).
 */
let parser: typeof import('luaparse') | undefined;
function luaparse(): typeof import('luaparse') {
  parser ??= createRequire(import.meta.url)('luaparse') as typeof import('luaparse');
  return parser;
}

export type CompileResult =
  | { ok: true; js: string; hooks: number }
  | { ok: false; reason: string; line: number };

/** Handle methods the runtime implements, with the count of arguments they check. */
export const METHOD_ARITY: Readonly<Record<string, number>> = {
  headers: 0,
  streamInfo: 0,
  dynamicMetadata: 0,
  get: 1,
  add: 2,
  replace: 2,
  remove: 1,
  set: 3,
  respond: 2,
  logTrace: 1,
  logDebug: 1,
  logInfo: 1,
  logWarn: 1,
  logErr: 1,
  logCritical: 1,
  // string methods (s:lower() ...), also reachable as string.lower(s)
  lower: 0,
  upper: 0,
  len: 0,
  sub: 2,
};

/** Global functions callable by name, and library functions callable as lib.name(...). */
const GLOBAL_FNS = new Set(['tonumber', 'tostring', 'type']);
const LIB_FNS: Readonly<Record<string, ReadonlySet<string>>> = {
  string: new Set(['lower', 'upper', 'len', 'sub']),
  math: new Set(['floor', 'ceil', 'abs']),
};

class Ineligible extends Error {
  readonly line: number;
  constructor(reason: string, node: { loc?: { start: { line: number } } } | undefined) {
    super(reason);
    this.line = node?.loc?.start.line ?? 0;
  }
}

interface Scope {
  readonly vars: Map<string, string>;
  readonly parent: Scope | undefined;
}

const HOOKS: Readonly<Record<string, number>> = { envoy_on_request: 0, envoy_on_response: 1 };

/** The source as Lua sees it: UTF-8 bytes, one latin1 character per byte. */
export function luaBytes(code: string): string {
  for (let i = 0; i < code.length; i++) if (code.charCodeAt(i) > 0x7f) return Buffer.from(code, 'utf8').toString('latin1');
  return code;
}

/** LuaJIT's chunk id for a chunk named by its own source (lj_debug_shortname, LUA_IDSIZE 60). */
export function chunkId(source: string): string {
  let len = 0;
  while (len < 48 && len < source.length && source.charCodeAt(len) >= 0x20) len++;
  if (len < source.length) return `[string "${source.slice(0, Math.min(len, 45))}..."]`;
  return `[string "${source}"]`;
}

const memo = new Map<string, CompileResult>();

/** Compiles (or says why not); results are kept per source, as every worker loads the same scripts. */
export function compileLua(code: string): CompileResult {
  let r = memo.get(code);
  if (r === undefined) {
    if (memo.size >= 256) memo.clear();
    r = compileUncached(code);
    memo.set(code, r);
  }
  return r;
}

function compileUncached(code: string): CompileResult {
  const src = luaBytes(code);
  const quick = quickOutside(src);
  if (quick) return { ok: false, ...quick };
  let ast: L.Chunk;
  try {
    ast = luaparse().parse(src, { luaVersion: 'LuaJIT', encodingMode: 'pseudo-latin1', locations: true, ranges: true, comments: false, scope: false });
  } catch (e) {
    // the real engine reports syntax errors in its own words
    return { ok: false, reason: `not parsed: ${(e as Error).message}`, line: (e as { line?: number }).line ?? 0 };
  }
  try {
    return new Compiler(src).chunk(ast);
  } catch (e) {
    if (e instanceof Ineligible) return { ok: false, reason: e.message, line: e.line };
    throw e;
  }
}

class Compiler {
  readonly #src: string;
  /** Offsets where each line starts (for the line of a call's "(", which LuaJIT reports). */
  readonly #lineStarts: number[] = [0];
  #uid = 0;
  #temps = 0;
  #upvalues = new Map<string, string>();

  constructor(src: string) {
    this.#src = src;
    for (let i = 0; i < src.length; i++) if (src.charCodeAt(i) === 10) this.#lineStarts.push(i + 1);
  }

  chunk(ast: L.Chunk): CompileResult {
    const out: string[] = [];
    const hooks: (string | undefined)[] = [undefined, undefined];
    for (const st of ast.body) {
      if (st.type === 'LocalStatement') {
        if (st.init.length > st.variables.length) throw new Ineligible('a chunk-level local with more values than names', st);
        for (let i = 0; i < st.variables.length; i++) {
          const init = st.init[i];
          if (init !== undefined && !isLiteral(init)) throw new Ineligible('a chunk-level local that is not a literal constant', init);
          const name = this.#fresh(st.variables[i]!.name);
          out.push(`const ${name} = ${init === undefined ? 'undefined' : this.#literal(init)};`);
          this.#upvalues.set(st.variables[i]!.name, name);
        }
        continue;
      }
      if (st.type === 'FunctionDeclaration' && !st.isLocal && st.identifier?.type === 'Identifier' && st.identifier.name in HOOKS) {
        if (st.parameters.some((p) => p.type !== 'Identifier')) throw new Ineligible('a hook with varargs', st);
        const dir = HOOKS[st.identifier.name]!;
        const name = this.#fresh(st.identifier.name);
        out.push(this.#hook(name, st));
        hooks[dir] = name;
        continue;
      }
      throw new Ineligible(`chunk-level ${describeStatement(st)}`, st);
    }
    const mask = (hooks[0] ? 1 : 0) | (hooks[1] ? 2 : 0);
    out.push(`return [${hooks[0] ?? 'undefined'}, ${hooks[1] ?? 'undefined'}];`);
    return { ok: true, js: out.join('\n'), hooks: mask };
  }

  #fresh(name: string): string {
    return `${name}$${++this.#uid}`;
  }

  #temp(): string {
    return `$${++this.#temps}`;
  }

  #hook(name: string, fn: L.FunctionDeclaration): string {
    this.#temps = 0;
    const scope: Scope = { vars: new Map(), parent: undefined };
    const params: string[] = [];
    for (const p of fn.parameters as L.Identifier[]) {
      const n = this.#fresh(p.name);
      scope.vars.set(p.name, n);
      params.push(n);
    }
    const body = this.#block(fn.body, scope);
    // the hook gets the handle; further parameters are nil, as Lua passes only the handle
    const decl = params.slice(1).map((p) => `let ${p};`).join(' ');
    const temps = this.#temps > 0 ? `let ${Array.from({ length: this.#temps }, (_, i) => `$${i + 1}`).join(', ')};` : '';
    return `function ${name}(${params[0] ?? '$h'}) {\n${temps}${decl}\n${body}\n}`;
  }

  #block(stmts: L.Statement[], parent: Scope): string {
    const scope: Scope = { vars: new Map(), parent };
    return stmts.map((s) => this.#statement(s, scope)).join('\n');
  }

  #lookup(name: string, scope: Scope): { kind: 'local' | 'upvalue'; js: string } | undefined {
    for (let s: Scope | undefined = scope; s; s = s.parent) {
      const v = s.vars.get(name);
      if (v !== undefined) return { kind: 'local', js: v };
    }
    const u = this.#upvalues.get(name);
    return u === undefined ? undefined : { kind: 'upvalue', js: u };
  }

  #statement(st: L.Statement, scope: Scope): string {
    switch (st.type) {
      case 'LocalStatement': {
        const vals = this.#exprList(st.init, st.variables.length, scope, st);
        const names = st.variables.map((v) => this.#fresh(v.name));
        // declared after the values are computed: `local x = x` reads the outer x
        st.variables.forEach((v, i) => scope.vars.set(v.name, names[i]!));
        return names.map((n, i) => `let ${n} = ${vals[i]};`).join(' ');
      }
      case 'AssignmentStatement': {
        // Lua (LuaJIT) order: the targets' tables and keys left to right, then the values, then
        // the stores right to left
        const parts: string[] = [];
        const stores: string[] = [];
        const line = this.#endLine(st);
        for (const target of st.variables) {
          if (target.type === 'Identifier') {
            const v = this.#lookup(target.name, scope);
            if (v === undefined) throw new Ineligible(`an assignment to global '${target.name}'`, target);
            if (v.kind === 'upvalue') throw new Ineligible(`an assignment to upvalue '${target.name}' (state kept across requests)`, target);
            stores.push(`${v.js} = %V;`);
          } else if (target.type === 'MemberExpression' || target.type === 'IndexExpression') {
            const t = this.#temp();
            const k = this.#temp();
            parts.push(`${t} = ${this.#expr(target.base, scope)};`);
            parts.push(`${k} = ${target.type === 'MemberExpression' ? JSON.stringify(target.identifier.name) : this.#expr(target.index, scope)};`);
            stores.push(`R.setindex(${t}, ${k}, %V, ${line}, ${this.#desc(target.base, scope)});`);
          } else throw new Ineligible('an unsupported assignment target', target);
        }
        const vals = this.#exprList(st.init, st.variables.length, scope, st);
        const tmps = vals.map(() => this.#temp());
        vals.forEach((v, i) => parts.push(`${tmps[i]} = ${v};`));
        for (let i = stores.length - 1; i >= 0; i--) parts.push(stores[i]!.replace('%V', tmps[i]!));
        return parts.join(' ');
      }
      case 'CallStatement':
        return `${this.#call(st.expression, scope)};`;
      case 'IfStatement': {
        let out = '';
        for (const c of st.clauses) {
          if (c.type === 'IfClause') out += `if (${this.#cond(c.condition, scope)}) {\n${this.#block(c.body, scope)}\n}`;
          else if (c.type === 'ElseifClause') out += ` else if (${this.#cond(c.condition, scope)}) {\n${this.#block(c.body, scope)}\n}`;
          else out += ` else {\n${this.#block(c.body, scope)}\n}`;
        }
        return out;
      }
      case 'DoStatement':
        return `{\n${this.#block(st.body, scope)}\n}`;
      case 'ReturnStatement':
        // a hook's return values are ignored, but they are still evaluated (calls have effects)
        return `${st.arguments.map((a) => `${this.#raw(a, scope)};`).join(' ')} return;`;
      default:
        throw new Ineligible(describeStatement(st), st);
    }
  }

  /** A condition as a JS boolean: comparisons and `not` are booleans already. */
  #cond(e: L.Expression, scope: Scope): string {
    const js = this.#expr(e, scope);
    if (e.type === 'BinaryExpression' && ['==', '~=', '<', '<=', '>', '>='].includes(e.operator)) return js;
    if (e.type === 'UnaryExpression' && e.operator === 'not') return js;
    return `R.t(${js})`;
  }

  /** `n` values for names from an expression list: the last call may supply several (here: one). */
  #exprList(exprs: L.Expression[], n: number, scope: Scope, at: L.Node): string[] {
    if (exprs.length > n) {
      // extra values are still evaluated
      throw new Ineligible('more values than names', at);
    }
    const out = exprs.map((e) => this.#expr(e, scope));
    while (out.length < n) out.push('undefined');
    return out;
  }

  /**
   * An expression whose result may be "no value" (only a call can), kept as is, unless it is in
   * parentheses, which adjust it to one value. `open` is the offset of the "(" (or "{") that
   * opens the list the expression is in, which is not one of its own parentheses.
   */
  #raw(e: L.Expression, scope: Scope, open = -1): string {
    if (isCall(e) && !this.#parenthesized(e, open)) return this.#call(e, scope);
    return this.#expr(e, scope);
  }

  /** luaparse drops parentheses: look at the source before the node instead. */
  #parenthesized(e: L.Node, open: number): boolean {
    const start = (e as { range?: [number, number] }).range?.[0];
    if (start === undefined) return false;
    let i = start - 1;
    while (i >= 0 && /\s/.test(this.#src[i]!)) i--;
    return i >= 0 && this.#src[i] === '(' && i !== open;
  }

  /** An expression adjusted to exactly one value. */
  #expr(e: L.Expression, scope: Scope): string {
    switch (e.type) {
      case 'NilLiteral':
      case 'BooleanLiteral':
      case 'NumericLiteral':
      case 'StringLiteral':
        return this.#literal(e);
      case 'Identifier': {
        const v = this.#lookup(e.name, scope);
        if (v === undefined) {
          throw new Ineligible(GLOBAL_FNS.has(e.name) || e.name in LIB_FNS ? `'${e.name}' used as a value` : `global '${e.name}'`, e);
        }
        return v.js;
      }
      case 'CallExpression':
      case 'StringCallExpression':
      case 'TableCallExpression': {
        const c = this.#call(e, scope);
        // only get() and the methods that return nothing can yield "no value"
        return /^R\.m_(get|add|replace|remove|set|log\w+)\(/.test(c) ? `R.one(${c})` : c;
      }
      case 'MemberExpression':
        if (e.indexer === ':') throw new Ineligible('a method reference without a call', e);
        if (e.base.type === 'Identifier' && this.#lookup(e.base.name, scope) === undefined) throw new Ineligible(`'${e.base.name}.${e.identifier.name}' used as a value`, e);
        return `R.index(${this.#expr(e.base, scope)}, ${JSON.stringify(e.identifier.name)}, ${this.#endLine(e)}, ${this.#desc(e.base, scope)})`;
      case 'IndexExpression':
        return `R.index(${this.#expr(e.base, scope)}, ${this.#expr(e.index, scope)}, ${this.#endLine(e)}, ${this.#desc(e.base, scope)})`;
      case 'LogicalExpression': {
        const t = this.#temp();
        const a = this.#expr(e.left, scope);
        const b = this.#expr(e.right, scope);
        return e.operator === 'and'
          ? `((${t} = ${a}) === undefined || ${t} === false ? ${t} : ${b})`
          : `((${t} = ${a}) === undefined || ${t} === false ? ${b} : ${t})`;
      }
      case 'UnaryExpression': {
        const a = this.#expr(e.argument, scope);
        if (e.operator === 'not') return `!R.t(${a})`;
        const t = this.#temp();
        if (e.operator === '-') return `(typeof (${t} = ${a}) === 'number' ? -${t} : R.unm(${t}, ${this.#endLine(e)}, ${this.#desc(e.argument, scope)}))`;
        return `R.len(${a}, ${this.#endLine(e)}, ${this.#desc(e.argument, scope)})`;
      }
      case 'BinaryExpression':
        return this.#binary(e, scope);
      case 'TableConstructorExpression':
        return this.#table(e, scope);
      default:
        throw new Ineligible(describeExpression(e), e);
    }
  }

  #binary(e: L.BinaryExpression, scope: Scope): string {
    const op = e.operator;
    const a = this.#expr(e.left, scope);
    const b = this.#expr(e.right, scope);
    // LuaJIT's line for an operator is where its last operand ends
    const line = this.#endLine(e);
    if (op === '==') return `(${a} === ${b})`;
    if (op === '~=') return `(${a} !== ${b})`;
    const x = this.#temp();
    const y = this.#temp();
    const da = this.#desc(e.left, scope);
    const db = this.#desc(e.right, scope);
    const both = `(${x} = ${a}, ${y} = ${b}, typeof ${x} === 'number' && typeof ${y} === 'number')`;
    switch (op) {
      case '+':
      case '-':
      case '*':
      case '/':
        return `(${both} ? ${x} ${op} ${y} : R.arith('${op}', ${x}, ${y}, ${line}, ${da}, ${db}))`;
      case '%':
        return `(${both} ? ${x} - Math.floor(${x} / ${y}) * ${y} : R.arith('%', ${x}, ${y}, ${line}, ${da}, ${db}))`;
      case '^':
        return `(${both} ? R.pow(${x}, ${y}) : R.arith('^', ${x}, ${y}, ${line}, ${da}, ${db}))`;
      case '..':
        return `(${x} = ${a}, ${y} = ${b}, typeof ${x} === 'string' && typeof ${y} === 'string' ? ${x} + ${y} : R.concat(${x}, ${y}, ${line}, ${da}, ${db}))`;
      case '<':
      case '<=':
        return `(R.cmp(${x} = ${a}, ${y} = ${b}, ${line}) ? ${x} ${op} ${y} : false)`;
      case '>':
      case '>=':
        // operands in source order; Lua compares a > b as b < a, so its error names b first
        return `(R.cmp(${x} = ${a}, ${y} = ${b}, ${line}, true) ? ${x} ${op} ${y} : false)`;
      default:
        throw new Ineligible(`operator '${op}'`, e);
    }
  }

  #table(e: L.TableConstructorExpression, scope: Scope): string {
    if (e.fields.length === 0) return 'new R.Table()';
    const parts: string[] = [];
    let pos = 0;
    e.fields.forEach((f, i) => {
      if (f.type === 'TableKeyString') parts.push(`[${JSON.stringify(f.key.name)}, ${this.#expr(f.value, scope)}]`);
      // a bad key (nil, NaN) raises at the line where its field ends, as LuaJIT
      else if (f.type === 'TableKey') parts.push(`[R.key(${this.#expr(f.key, scope)}, ${this.#endLine(f)}), ${this.#expr(f.value, scope)}]`);
      else if (i === e.fields.length - 1 && isCall(f.value)) parts.push(`[${++pos}, ${this.#raw(f.value, scope, (e as { range?: [number, number] }).range?.[0] ?? -1)}]`);
      else parts.push(`[${++pos}, ${this.#expr(f.value, scope)}]`);
    });
    return `R.table([${parts.join(', ')}])`;
  }

  #args(e: L.CallExpression | L.StringCallExpression | L.TableCallExpression): L.Expression[] {
    if (e.type === 'StringCallExpression') return [e.argument];
    if (e.type === 'TableCallExpression') return [e.arguments];
    return e.arguments;
  }

  /** Arguments as JS, padded to `arity` with "no value" so the callee can tell nil from none. */
  #argList(args: L.Expression[], arity: number, scope: Scope, open = -1): string {
    const out = args.map((a, i) => (i === args.length - 1 ? this.#raw(a, scope, open) : this.#expr(a, scope)));
    while (out.length < arity) out.push('R.NV');
    return out.join(', ');
  }

  #call(e: L.Expression, scope: Scope): string {
    if (e.type !== 'CallExpression' && e.type !== 'StringCallExpression' && e.type !== 'TableCallExpression') throw new Ineligible(describeExpression(e), e);
    const base = e.base;
    const args = this.#args(e);
    const open = this.#openOffset(e);
    const line = this.#lineAt(open);
    if (base.type === 'MemberExpression' && base.indexer === ':') {
      const name = base.identifier.name;
      const arity = METHOD_ARITY[name];
      if (arity === undefined) throw new Ineligible(`method '${name}'`, base);
      const self = this.#expr(base.base, scope);
      return `R.m_${name}(${self}, ${line}, ${this.#desc(base.base, scope)}${arity > 0 || args.length > 0 ? ', ' : ''}${this.#argList(args, arity, scope, open)})`;
    }
    if (base.type === 'Identifier' && this.#lookup(base.name, scope) === undefined && GLOBAL_FNS.has(base.name)) {
      if (base.name === 'tonumber' && args.length > 1) throw new Ineligible('tonumber() with a base', e);
      return `R.g_${base.name}(${line}, ${this.#argList(args, 1, scope, open)})`;
    }
    if (base.type === 'MemberExpression' && base.indexer === '.' && base.base.type === 'Identifier' && this.#lookup(base.base.name, scope) === undefined) {
      const lib = LIB_FNS[base.base.name];
      const fn = base.identifier.name;
      if (lib?.has(fn)) {
        const arity = base.base.name === 'string' ? 1 + (METHOD_ARITY[fn] ?? 0) : 1;
        return `R.${base.base.name}_${fn}(${line}, ${this.#argList(args, arity, scope, open)})`;
      }
    }
    throw new Ineligible(`a call to ${describeExpression(base)}`, base);
  }

  #literal(e: L.Expression): string {
    switch (e.type) {
      case 'NilLiteral':
        return 'undefined';
      case 'BooleanLiteral':
        return e.value ? 'true' : 'false';
      case 'NumericLiteral':
        return Object.is(e.value, -0) ? '-0' : Number.isFinite(e.value) ? String(e.value) : e.value > 0 ? 'Infinity' : '-Infinity';
      case 'StringLiteral':
        return JSON.stringify(e.value);
      case 'UnaryExpression':
        return `(-${this.#literal(e.argument)})`;
      default:
        throw new Ineligible('not a literal', e);
    }
  }

  /** How LuaJIT names an operand in "attempt to ... on local 'x' (a nil value)". */
  #desc(e: L.Expression, scope: Scope): string {
    if (e.type === 'Identifier') {
      const v = this.#lookup(e.name, scope);
      return JSON.stringify(v === undefined ? `global '${e.name}'` : `${v.kind} '${e.name}'`);
    }
    if (e.type === 'MemberExpression' && e.indexer === '.') return JSON.stringify(`field '${e.identifier.name}'`);
    if (e.type === 'IndexExpression' && e.index.type === 'StringLiteral') return JSON.stringify(`field '${e.index.value}'`);
    return '""';
  }

  #line(e: L.Node): number {
    return e.loc?.start.line ?? 0;
  }

  #endLine(e: L.Node): number {
    return e.loc?.end.line ?? this.#line(e);
  }

  /** Offset of a call's argument list (its "(", "{" or string), whose line LuaJIT reports. */
  #openOffset(e: L.CallExpression | L.StringCallExpression | L.TableCallExpression): number {
    const end = (e.base as { range?: [number, number] }).range?.[1];
    if (end === undefined) return -1;
    let i = end;
    while (i < this.#src.length && /\s/.test(this.#src[i]!)) i++;
    return i;
  }

  #lineAt(offset: number): number {
    if (offset < 0) return 0;
    let lo = 0;
    let hi = this.#lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  }
}

function isCall(e: L.Expression): e is L.CallExpression | L.StringCallExpression | L.TableCallExpression {
  return e.type === 'CallExpression' || e.type === 'StringCallExpression' || e.type === 'TableCallExpression';
}

function isLiteral(e: L.Expression): boolean {
  if (e.type === 'NilLiteral' || e.type === 'BooleanLiteral' || e.type === 'NumericLiteral' || e.type === 'StringLiteral') return true;
  return e.type === 'UnaryExpression' && e.operator === '-' && e.argument.type === 'NumericLiteral';
}

function describeStatement(st: L.Statement): string {
  switch (st.type) {
    case 'WhileStatement':
    case 'RepeatStatement':
    case 'ForNumericStatement':
    case 'ForGenericStatement':
      return 'a loop';
    case 'FunctionDeclaration':
      return st.identifier?.type === 'Identifier' ? `function '${st.identifier.name}'` : 'a function definition';
    case 'GotoStatement':
    case 'LabelStatement':
      return 'goto';
    case 'BreakStatement':
      return 'break';
    default:
      return `a ${st.type.replace(/Statement$/, '').toLowerCase()} statement`;
  }
}

function describeExpression(e: L.Expression): string {
  switch (e.type) {
    case 'FunctionDeclaration':
      return 'a function expression';
    case 'VarargLiteral':
      return '...';
    case 'Identifier':
      return `'${e.name}'`;
    case 'MemberExpression':
      return e.base.type === 'Identifier' ? `'${e.base.name}${e.indexer}${e.identifier.name}'` : `'${e.identifier.name}'`;
    default:
      return `a ${e.type}`;
  }
}
