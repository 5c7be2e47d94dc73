/**
 * Claim paths address values inside a token's claims the way IdPs shape them: nested objects
 * (`realm_access.roles`, `resource_access.my-client.roles`) and names that contain dots, slashes or colons
 * (`["https://example.com/roles"]`, as Auth0 namespaces custom claims).
 *
 * Syntax: segments separated by `.`; a segment in brackets is taken literally, with or without quotes:
 * `a.b`, `a["x.y"]`, `[https://example.com/roles]`, `resource_access['my.client'].roles`.
 */

/** Parses a claim path; throws Error with a human message on bad syntax (reported by `portcullis check`). */
export function parseClaimPath(text: string): string[] {
  const segments: string[] = [];
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`invalid claim path "${text}": ${why}`);
  };
  if (text.length === 0) fail('empty');
  while (i < text.length) {
    if (text[i] === '[') {
      const quote = text[i + 1] === '"' || text[i + 1] === "'" ? text[i + 1] : undefined;
      const start = i + 1 + (quote ? 1 : 0);
      const end = quote ? text.indexOf(quote + ']', start) : text.indexOf(']', start);
      if (end < 0) fail('unclosed "["');
      segments.push(text.slice(start, end));
      i = end + (quote ? 2 : 1);
    } else {
      let end = i;
      while (end < text.length && text[end] !== '.' && text[end] !== '[') end++;
      if (end === i) fail(`empty segment at ${i}`);
      segments.push(text.slice(i, end));
      i = end;
    }
    if (i < text.length) {
      if (text[i] === '.') {
        i++;
        if (i >= text.length) fail('trailing "."');
      } else if (text[i] !== '[') {
        fail(`unexpected "${text[i]}" at ${i}`);
      }
    }
  }
  return segments;
}

/** Reads a claim by path; undefined when any segment is missing. Own properties only (no prototype walk). */
export function getClaim(claims: unknown, path: readonly string[]): unknown {
  let value: unknown = claims;
  for (const segment of path) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
    if (!Object.hasOwn(value, segment)) return undefined;
    value = (value as Record<string, unknown>)[segment];
  }
  return value;
}

export function formatClaimPath(path: readonly string[]): string {
  return path.map((s, i) => (/^[A-Za-z0-9_-]+$/.test(s) ? (i === 0 ? s : '.' + s) : `[${JSON.stringify(s)}]`)).join('');
}
