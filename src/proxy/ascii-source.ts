/**
 * Rewrites JavaScript source so that it holds no character above U+00FF, without changing what it
 * means. V8 keeps every module's source for the life of the isolate, one byte per character only
 * when all characters fit in Latin-1: a single arrow or dash in a comment doubles the copy. Worker
 * threads load the stripped copy of src/ (stripped-sources.ts), so each pays for this per thread.
 *
 * A small tokenizer finds where a character sits: in comments, strings, untagged templates and
 * regular expressions it becomes a \uXXXX escape (same value). Wide spaces become spaces: type
 * stripping blanks multi-byte characters with them, so the caller must pass only sources whose
 * original text had none (see hasWideSpace). Raw template text (String.raw and other tags) is
 * left alone. Anything unexpected returns null: the caller keeps the original.
 */

/** Keywords after which `/` starts a regular expression and a backtick an untagged template. */
const EXPRESSION_KEYWORDS = new Set(['return', 'typeof', 'instanceof', 'in', 'of', 'new', 'delete', 'void', 'throw', 'case', 'do', 'else', 'yield', 'await']);

const isIdentChar = (c: number) => (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 36 || c === 95 || c > 127;

/** Whether a text holds a space character above U+00FF (then its stripped form must be kept as is). */
export function hasWideSpace(text: string): boolean {
  return /[\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]/.test(text);
}

function escape(code: number): string {
  return '\\u' + code.toString(16).padStart(4, '0');
}

type Mode = 'code' | 'string' | 'template' | 'regex' | 'line' | 'block';

export function asciiSource(src: string): string | null {
  let wide = false;
  for (let i = 0; i < src.length; i++) {
    if (src.charCodeAt(i) > 0xff) {
      wide = true;
      break;
    }
  }
  if (!wide) return src;
  let out = '';
  let from = 0;
  let mode: Mode = 'code';
  let quote = 0;
  let inClass = false;
  let tagged = false;
  /** For each open template `${`: the code-brace depth at which it closes, and whether the template is tagged. */
  const templates: Array<{ depth: number; tagged: boolean }> = [];
  let depth = 0;
  /** Whether the last significant code token ends an expression (then `/` divides, a backtick is tagged). */
  let valueEnd = false;
  let word = '';
  const n = src.length;
  for (let i = 0; i < n; i++) {
    const c = src.charCodeAt(i);
    if (c > 0xff) {
      let rep: string;
      if (mode === 'template' && tagged) {
        continue; // raw text is observable: keep it (the file stays two-byte)
      } else if (/\s/.test(src[i]!)) {
        // Wide spaces are blanks left by type stripping, in code: whatever the tokenizer believes
        // the mode is, a space keeps the file valid (the caller guarantees the source had none).
        rep = ' ';
      } else if (mode === 'code') {
        return null; // a non-Latin-1 identifier: rare enough not to handle
      } else {
        if (c >= 0xd800 && c <= 0xdfff && mode === 'regex') return null; // astral in a regex: leave the file as it is
        rep = escape(c);
      }
      out += src.slice(from, i) + rep;
      from = i + 1;
      continue;
    }
    switch (mode) {
      case 'line':
        if (c === 10 || c === 13) mode = 'code';
        break;
      case 'block':
        if (c === 42 && src.charCodeAt(i + 1) === 47) {
          mode = 'code';
          i++;
        }
        break;
      case 'string':
        if (c === 92) {
          if (src.charCodeAt(i + 1) > 0xff) return null; // `\→`: an identity escape, keep the file
          i++;
        } else if (c === quote) {
          mode = 'code';
          valueEnd = true;
        }
        break;
      case 'regex':
        if (c === 92) {
          if (src.charCodeAt(i + 1) > 0xff) return null;
          i++;
        } else if (c === 91) inClass = true;
        else if (c === 93) inClass = false;
        else if (c === 47 && !inClass) {
          mode = 'code';
          valueEnd = true;
        }
        break;
      case 'template':
        if (c === 92) {
          if (!tagged && src.charCodeAt(i + 1) > 0xff) return null;
          i++;
        } else if (c === 96) {
          mode = 'code';
          valueEnd = true;
        } else if (c === 36 && src.charCodeAt(i + 1) === 123) {
          templates.push({ depth, tagged });
          depth++;
          i++;
          mode = 'code';
          valueEnd = false;
        }
        break;
      case 'code': {
        if (isIdentChar(c)) {
          word += src[i];
          const next = src.charCodeAt(i + 1);
          if (!(next <= 0xff && isIdentChar(next))) {
            valueEnd = !EXPRESSION_KEYWORDS.has(word);
            word = '';
          }
          break;
        }
        if (c === 32 || c === 9 || c === 10 || c === 13 || c === 0xa0) break;
        if (c === 47) {
          const next = src.charCodeAt(i + 1);
          if (next === 47) {
            mode = 'line';
            i++;
          } else if (next === 42) {
            mode = 'block';
            i++;
          } else if (valueEnd) {
            valueEnd = false; // division
          } else {
            mode = 'regex';
            inClass = false;
          }
          break;
        }
        if ((c === 43 || c === 45) && src.charCodeAt(i + 1) === c) {
          i++; // `x++ / 2` divides: after ++ or -- the expression state is the operand's
        } else if (c === 39 || c === 34) {
          mode = 'string';
          quote = c;
        } else if (c === 96) {
          mode = 'template';
          tagged = valueEnd;
        } else if (c === 123) {
          depth++;
          valueEnd = false;
        } else if (c === 125) {
          depth--;
          const t = templates[templates.length - 1];
          if (t && t.depth === depth) {
            templates.pop();
            mode = 'template';
            tagged = t.tagged;
          } else {
            valueEnd = true;
          }
        } else {
          // `)` and `]` end an expression; every other punctuator expects one
          valueEnd = c === 41 || c === 93;
        }
        break;
      }
    }
  }
  if (mode !== 'code' && mode !== 'line') return null;
  return out + src.slice(from);
}
