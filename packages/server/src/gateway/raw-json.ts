/**
 * Reads the source text of values in a JSON document without parsing it, so the gateway can
 * tell `10` from `10.0` (which `JSON.parse` makes identical). Tolerant: on malformed input it
 * returns what it found so far; the caller still runs `JSON.parse` for validity.
 */

function skipWhitespace(text: string, i: number): number {
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
    i++;
  }
  return i;
}

/** Index just past the string starting at `i` (a `"`), or -1 if it never ends. */
function stringEnd(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    const c = text[j];
    if (c === '\\') j++;
    else if (c === '"') return j + 1;
  }
  return -1;
}

/** Index just past the JSON value starting at `i`, or -1 if it never ends. */
function valueEnd(text: string, i: number): number {
  const first = text[i];
  if (first === '"') return stringEnd(text, i);
  if (first === '{' || first === '[') {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const c = text[j];
      if (c === '"') {
        const end = stringEnd(text, j);
        if (end < 0) return -1;
        j = end - 1;
      } else if (c === '{' || c === '[') depth++;
      else if (c === '}' || c === ']') {
        depth--;
        if (depth === 0) return j + 1;
      }
    }
    return -1;
  }
  let j = i;
  while (j < text.length && !',}] \t\n\r'.includes(text[j] as string)) j++;
  return j === i ? -1 : j;
}

/**
 * The source text of every value of the top-level member `key` of a JSON object, in order
 * (duplicates included). `topLevelRawValues('{"timeout": 10.0}', 'timeout')` is `['10.0']`.
 */
export function topLevelRawValues(text: string, key: string): string[] {
  const found: string[] = [];
  let i = skipWhitespace(text, 0);
  if (text[i] !== '{') return found;
  i++;
  for (;;) {
    i = skipWhitespace(text, i);
    if (text[i] !== '"') return found;
    const nameEnd = stringEnd(text, i);
    if (nameEnd < 0) return found;
    let name: unknown;
    try {
      name = JSON.parse(text.slice(i, nameEnd));
    } catch {
      return found;
    }
    i = skipWhitespace(text, nameEnd);
    if (text[i] !== ':') return found;
    i = skipWhitespace(text, i + 1);
    const end = valueEnd(text, i);
    if (end < 0) return found;
    if (name === key) found.push(text.slice(i, end));
    i = skipWhitespace(text, end);
    if (text[i] !== ',') return found;
    i++;
  }
}
