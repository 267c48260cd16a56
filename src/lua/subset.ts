/**
 * The compiled tier's quick check, apart from the compiler so that a worker can run it without
 * loading the compiler and its parser (about 0.7 MiB per worker when every script fails it).
 *
 * Words that put a script outside the subset wherever they appear as code. A match inside a string
 * or a comment only sends the script to LuaJIT, which is always safe.
 */
const OUTSIDE = /\b(while|for|repeat|goto|break)\b|\.\.\./;

/** Why a script is certainly outside the subset (and the line), or undefined when it may be inside. */
export function quickOutside(src: string): { reason: string; line: number } | undefined {
  const m = OUTSIDE.exec(src);
  if (!m) return undefined;
  const line = src.slice(0, m.index).split('\n').length;
  return { reason: m[0] === '...' ? 'varargs (...)' : m[0] === 'goto' || m[0] === 'break' ? m[0] : 'a loop', line };
}
