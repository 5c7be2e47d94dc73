/**
 * The defensive credential check that runs over every string of every audit record, whatever the
 * configuration: any substring that looks like a JWT/JWS/JWE (base64url segments starting `eyJ`) or a
 * `Bearer <credential>` becomes `[redacted]`. The record never carries a token, a cookie or an Authorization
 * header by construction (the allowlist has no such field); this catches a token that arrives inside an
 * allowed field (a path with `?access_token=`, a user agent, a LogQL string).
 */
import type { JsonValue } from './canonical.ts';

/** What a secret-looking substring is replaced with. */
export const REDACTED = '[redacted]';

/**
 * A compact JWS (3 segments, the signature may be empty for `alg: none`) or JWE (5 segments). `[\w-]` has no
 * `.`, so the match is linear. The header of every JOSE object starts `{"` = `eyJ` in base64url.
 */
const JOSE = /eyJ[\w-]*\.[\w-]*\.[\w-]*(?:\.[\w-]*\.[\w-]*)?/g;
/** RFC 6750 §2.1 credentials, in any letter case; the credential is whatever follows up to whitespace. */
const BEARER = /\bbearer\s+\S*/gi;

/** Result of {@link scrubSecrets}: the cleaned string and how many substrings were replaced. */
export interface ScrubResult {
  readonly value: string;
  readonly count: number;
}

/**
 * Replaces every JWT-looking and `Bearer ...` substring with `[redacted]`.
 *
 * @example scrubSecrets('/x?access_token=eyJhbGciOi.eyJzdWIi.c2ln') // { value: '/x?access_token=[redacted]', count: 1 }
 */
export function scrubSecrets(value: string): ScrubResult {
  let count = 0;
  let out = value;
  // Bearer first, so "Bearer <jwt>" counts as one secret, not two.
  if (/bearer/i.test(out)) {
    out = out.replace(BEARER, () => {
      count++;
      return REDACTED;
    });
  }
  if (out.includes('eyJ')) {
    out = out.replace(JOSE, () => {
      count++;
      return REDACTED;
    });
  }
  return { value: out, count };
}

/** True when `value` holds something {@link scrubSecrets} would remove. */
export function containsSecret(value: string): boolean {
  JOSE.lastIndex = 0;
  BEARER.lastIndex = 0;
  return JOSE.test(value) || BEARER.test(value);
}


/**
 * Applies {@link scrubSecrets} to every string (and string inside an array) of a flat record. Returns the
 * same object when nothing was found, so the common case allocates nothing.
 */
export function scrubRecord<T extends { readonly [key: string]: JsonValue }>(record: T): { record: T; count: number } {
  let count = 0;
  let out: Record<string, JsonValue> | undefined;
  for (const [name, value] of Object.entries(record)) {
    let next: JsonValue = value;
    if (typeof value === 'string') {
      const r = scrubSecrets(value);
      if (r.count > 0) {
        count += r.count;
        next = r.value;
      }
    } else if (Array.isArray(value)) {
      let changed = false;
      const items = (value as readonly JsonValue[]).map((item) => {
        if (typeof item !== 'string') return item;
        const r = scrubSecrets(item);
        if (r.count === 0) return item;
        count += r.count;
        changed = true;
        return r.value;
      });
      if (changed) next = items;
    }
    if (next !== value) {
      out ??= { ...record };
      out[name] = next;
    }
  }
  return { record: (out ?? record) as T, count };
}
