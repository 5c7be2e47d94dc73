/**
 * Canonical JSON per RFC 8785 (JSON Canonicalization Scheme): object members sorted by the UTF-16 code
 * units of their names (§3.2.3), no insignificant whitespace (§3.2.1), numbers in ECMAScript
 * `Number.prototype.toString` form (§3.2.2.3) and strings escaped as ECMAScript's `JSON.stringify` does
 * (§3.2.2.2). Hashes are computed over this form, so a stored record whose JSON was re-serialised (another
 * key order, whitespace, `1.0` for `1`) still verifies: the verifier parses and re-canonicalises.
 */
import { AuditError } from './errors.ts';

/** JSON data as the audit record and its canonical form allow. */
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };
export type JsonObject = { readonly [key: string]: JsonValue };

/** Records are flat; this only bounds hostile stored JSON so recursion cannot exhaust the stack. */
const MAX_DEPTH = 64;

/**
 * The RFC 8785 canonical form of `value`.
 *
 * Object members whose value is `undefined` are skipped (as `JSON.stringify` does), so an optional field
 * that is absent and one that is `undefined` hash the same.
 *
 * @throws AuditError `ERR_AUDIT_CANONICAL_INVALID` for values that are not JSON data: non-finite numbers,
 *   bigint, functions, symbols, `undefined` in arrays, lone surrogates (RFC 8785 §3.2.2.2 requires
 *   well-formed strings), non-plain objects, nesting deeper than 64.
 * @example canonicalize({ b: 1, a: [true, 'x'] }) === '{"a":[true,"x"],"b":1}'
 */
export function canonicalize(value: unknown): string {
  return isSortedFlat(value) ? JSON.stringify(value) : write(value, 0);
}

/**
 * True for a plain object whose own keys already come in RFC 8785 order and whose members are scalars or
 * arrays of scalars, all valid JSON data: the shape of every audit record, which `buildAuditRecord` emits in
 * that order, and of every record read back from the store. For such a value `JSON.stringify` writes exactly
 * what `write` would (it takes members in `Object.keys` order, skips `undefined` members, and formats
 * strings and numbers with the same functions), in one native pass and as one flat string, which the hash
 * and the store then read without flattening a rope. Anything else takes `write`.
 */
function isSortedFlat(value: unknown): boolean {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  const obj = value as Record<string, unknown>;
  let prev: string | undefined;
  for (const key of Object.keys(obj)) {
    // `<` on strings compares UTF-16 code units, the order §3.2.3 asks for.
    if ((prev !== undefined && !(prev < key)) || !key.isWellFormed()) return false;
    prev = key;
    const member = obj[key];
    if (Array.isArray(member)) {
      for (let i = 0; i < member.length; i++) if (!isScalar(member[i])) return false;
    } else if (member !== undefined && !isScalar(member)) return false;
  }
  return true;
}

/** A JSON scalar `write` would accept; anything it would refuse goes to `write`, which throws the reason. */
function isScalar(value: unknown): boolean {
  switch (typeof value) {
    case 'string':
      return value.isWellFormed();
    case 'number':
      return Number.isFinite(value);
    case 'boolean':
      return true;
    default:
      return value === null;
  }
}

function write(value: unknown, depth: number): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw invalid(`non-finite number ${String(value)}`);
      // JSON.stringify applies Number::toString, which is exactly RFC 8785 §3.2.2.3 (and maps -0 to 0).
      return JSON.stringify(value);
    case 'string':
      if (!value.isWellFormed()) throw invalid('string with a lone surrogate');
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      throw invalid(`${typeof value} is not JSON data`);
  }
  if (depth >= MAX_DEPTH) throw invalid(`nesting deeper than ${MAX_DEPTH}`);
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      const item: unknown = value[i];
      if (item === undefined) throw invalid('undefined inside an array');
      out += write(item, depth + 1);
    }
    return out + ']';
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) throw invalid('not a plain object');
  const obj = value as Record<string, unknown>;
  // Array.prototype.sort without a comparator orders by UTF-16 code units, which is what §3.2.3 asks for.
  const keys = Object.keys(obj).sort();
  let out = '{';
  let first = true;
  for (const key of keys) {
    const member = obj[key];
    if (member === undefined) continue;
    if (!key.isWellFormed()) throw invalid('member name with a lone surrogate');
    if (!first) out += ',';
    first = false;
    out += JSON.stringify(key) + ':' + write(member, depth + 1);
  }
  return out + '}';
}

function invalid(why: string): AuditError {
  return new AuditError('ERR_AUDIT_CANONICAL_INVALID', `cannot canonicalise: ${why}`);
}
