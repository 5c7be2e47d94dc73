/**
 * verifyToken: every bad token gets its precise code, every good one its claims. Issuers are real
 * registries over key files written at run time; a real loopback server proves header URLs (jku, x5u)
 * are never fetched.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errors as joseErrors } from 'jose';
import type { IssuerConfig, JwksPolicy, StaticKeySpec } from '../../src/config/types.ts';
import { createIssuerRegistry } from '../../src/auth/issuers.ts';
import type { IssuerRegistry } from '../../src/auth/issuers.ts';
import { MAX_KNOWN_HEADERS, knownHeaderCount, mapJoseError, verifyToken, verifyTokenNow } from '../../src/auth/verify.ts';
import { isProxyError } from '../../src/errors.ts';
import { base64url, createTestSigner, forgeToken } from '../helpers/keys.ts';
import type { TestSigner } from '../helpers/keys.ts';
import { TEST_JWKS_POLICY, testIssuerConfig } from '../helpers/config.ts';

const NOW = 1_700_000_000;
const LEEWAY = 30;
const ISS_A = 'https://a.idp.test';
const ISS_B = 'https://b.idp.test';
const ISS_H = 'https://hmac.idp.test';
const ISS_M = 'https://mixed.idp.test';
const ISS_M2 = 'https://mixed2.idp.test';
const HMAC_SECRET = 'k'.repeat(32);

const POLICY: JwksPolicy = { ...TEST_JWKS_POLICY, timeoutMs: 1000, retryAfterSeconds: 5, maxBytes: 65_536 };

let dir: string;
let registry: IssuerRegistry;
let rsa: TestSigner; // issuer A
let ec: TestSigner; // issuer A
let ed: TestSigner; // issuer A
let ps: TestSigner; // issuer A, JWK declares PS256
let rsaB: TestSigner; // issuer B
let rsaM: TestSigner; // issuers M and M2 (PEM, no kid)
let hs: TestSigner; // issuer H and M2
let attacker: TestSigner;
let headerUrlServer: Server;
let headerUrlHits = 0;
let headerUrl: string;

function issuer(id: string, iss: string, over: Partial<IssuerConfig>): IssuerConfig {
  return testIssuerConfig({ id, issuer: iss, algorithms: ['RS256'], clockSkewSeconds: LEEWAY, jwks: POLICY, ...over });
}

function keyFile(name: string, content: string): StaticKeySpec {
  const path = join(dir, name);
  writeFileSync(path, content);
  return name.endsWith('.pem') ? { kind: 'pem_file', path } : { kind: 'jwks_file', path };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'portcullis-verify-'));
  [rsa, ec, ed, ps, rsaB, rsaM, hs, attacker] = await Promise.all([
    createTestSigner('RS256'),
    createTestSigner('ES256'),
    createTestSigner('EdDSA'),
    createTestSigner('PS256'),
    createTestSigner('RS256'),
    createTestSigner('RS256'),
    createTestSigner('HS256', { secret: HMAC_SECRET }),
    createTestSigner('RS256'),
  ]);
  registry = await createIssuerRegistry(
    [
      issuer('a', ISS_A, {
        audiences: ['api', 'other-api'],
        algorithms: ['RS256', 'ES256', 'EdDSA', 'PS256'],
        requiredClaims: ['exp', 'sub'],
        staticKeys: [keyFile('a.jwks', JSON.stringify({ keys: [rsa.publicJwk, ec.publicJwk, ed.publicJwk, ps.publicJwk] }))],
      }),
      issuer('b', ISS_B, { staticKeys: [keyFile('b.jwks', JSON.stringify(rsaB.jwks))] }),
      issuer('h', ISS_H, { algorithms: ['HS256'], staticKeys: [{ kind: 'hmac_env', name: 'HS_SECRET' }] }),
      // Mixed issuers allow both families, so the key-alg binding (not the allow-list) must stop confusion.
      issuer('m', ISS_M, { algorithms: ['RS256', 'HS256'], staticKeys: [keyFile('m.pem', rsaM.publicPem)] }),
      issuer('m2', ISS_M2, {
        algorithms: ['RS256', 'HS256'],
        staticKeys: [keyFile('m2.pem', rsaM.publicPem), { kind: 'hmac_env', name: 'HS_SECRET' }],
      }),
    ],
    { env: { HS_SECRET: HMAC_SECRET } },
  );
  headerUrlServer = createServer((_req, res) => {
    headerUrlHits += 1;
    res.end(JSON.stringify(attacker.jwks));
  });
  await new Promise<void>((resolve) => headerUrlServer.listen(0, '127.0.0.1', resolve));
  headerUrl = `http://127.0.0.1:${(headerUrlServer.address() as AddressInfo).port}/jwks`;
});

after(async () => {
  registry.close();
  rmSync(dir, { recursive: true, force: true });
  await new Promise<void>((resolve) => headerUrlServer.close(() => resolve()));
});

const good = (extra: Record<string, unknown> = {}) => ({ iss: ISS_A, aud: 'api', sub: 'alice', exp: NOW + 300, iat: NOW, ...extra });

/** Replaces the payload segment of a signed token, keeping its header and signature. */
function withPayload(token: string, payload: Record<string, unknown>): string {
  const [h, , s] = token.split('.');
  return `${h}.${base64url(JSON.stringify(payload))}.${s}`;
}

interface Case {
  readonly name: string;
  readonly token: () => string;
  /** `ok` or the expected ProxyError code. */
  readonly want: string;
  readonly allowed?: readonly string[];
  readonly now?: number;
}

const CASES: Case[] = [
  // happy paths, one per family
  { name: 'RS256', token: () => rsa.sign(good()), want: 'ok' },
  { name: 'ES256', token: () => ec.sign(good()), want: 'ok' },
  { name: 'EdDSA', token: () => ed.sign(good()), want: 'ok' },
  { name: 'PS256', token: () => ps.sign(good()), want: 'ok' },
  { name: 'HS256 (secret without kid, token with kid)', token: () => hs.sign({ iss: ISS_H, exp: NOW + 60 }), want: 'ok' },
  { name: 'HS256 without kid', token: () => hs.sign({ iss: ISS_H, exp: NOW + 60 }, { kid: undefined }), want: 'ok' },
  { name: 'RS256 on a mixed issuer', token: () => rsaM.sign({ iss: ISS_M, exp: NOW + 60 }), want: 'ok' },
  { name: 'HS256 on a mixed issuer with a secret', token: () => hs.sign({ iss: ISS_M2, exp: NOW + 60 }), want: 'ok' },

  // alg none, in every casing, with and without a signature, even before the issuer is known
  ...['none', 'None', 'NONE', 'nOnE'].flatMap((alg): Case[] => [
    { name: `alg ${alg}, empty signature`, token: () => forgeToken({ alg, typ: 'JWT' }, good()), want: 'ERR_TOKEN_ALG_NOT_ALLOWED' },
    { name: `alg ${alg}, with a signature`, token: () => forgeToken({ alg }, good(), 'c2ln'), want: 'ERR_TOKEN_ALG_NOT_ALLOWED' },
    // Refused before the issuer is looked up: an allow-list that happened to be lax could not let it in.
    { name: `alg ${alg}, unknown issuer`, token: () => forgeToken({ alg }, good({ iss: 'https://x.test' })), want: 'ERR_TOKEN_ALG_NOT_ALLOWED' },
  ]),
  { name: 'alg none with the kid of a real key', token: () => forgeToken({ alg: 'none', kid: rsa.kid }, good()), want: 'ERR_TOKEN_ALG_NOT_ALLOWED' },

  // allow-list
  { name: 'ES256 for an issuer allowing only RS256', token: () => ec.sign(good({ iss: ISS_B })), want: 'ERR_TOKEN_ALG_NOT_ALLOWED' },
  { name: 'unsupported alg name', token: () => rsa.sign(good(), { alg: 'XS256' }), want: 'ERR_TOKEN_ALG_NOT_ALLOWED' },
  { name: 'alg with different casing (rs256)', token: () => rsa.sign(good(), { alg: 'rs256' }), want: 'ERR_TOKEN_ALG_NOT_ALLOWED' },

  // key confusion (RFC 8725 §2.1): HS256 signed with the RSA public key bytes
  {
    name: 'key confusion on an RSA-only issuer',
    token: () => forgeToken({ alg: 'HS256', kid: rsa.kid }, good(), { hmacKey: rsa.publicPem }),
    want: 'ERR_TOKEN_ALG_NOT_ALLOWED',
  },
  {
    name: 'key confusion where HS256 is allowed but the issuer has no secret',
    token: () => forgeToken({ alg: 'HS256' }, { iss: ISS_M, exp: NOW + 60 }, { hmacKey: rsaM.publicPem }),
    want: 'ERR_TOKEN_KEY_UNKNOWN',
  },
  {
    name: 'key confusion with a DER public key as the HMAC key',
    token: () => forgeToken({ alg: 'HS256' }, { iss: ISS_M, exp: NOW + 60 }, { hmacKey: rsaM.publicKey!.export({ type: 'spki', format: 'der' }) }),
    want: 'ERR_TOKEN_KEY_UNKNOWN',
  },
  {
    name: 'key confusion where the issuer also has a secret: the secret is used, the forgery fails',
    token: () => forgeToken({ alg: 'HS256' }, { iss: ISS_M2, exp: NOW + 60 }, { hmacKey: rsaM.publicPem }),
    want: 'ERR_TOKEN_SIGNATURE_INVALID',
  },
  {
    name: 'an ES256 header over an RS256 signature with the RSA kid',
    token: () => rsa.sign(good(), { alg: 'ES256' }),
    want: 'ERR_TOKEN_KEY_UNKNOWN',
  },

  // signatures
  { name: 'payload changed after signing', token: () => withPayload(rsa.sign(good()), good({ sub: 'root' })), want: 'ERR_TOKEN_SIGNATURE_INVALID' },
  {
    name: 'signature of another token',
    token: () => `${rsa.sign(good()).split('.').slice(0, 2).join('.')}.${rsa.sign(good({ sub: 'bob' })).split('.')[2]}`,
    want: 'ERR_TOKEN_SIGNATURE_INVALID',
  },
  { name: 'first signature character changed', token: () => { const t = rsa.sign(good()); const i = t.lastIndexOf('.') + 1; return t.slice(0, i) + (t[i] === 'A' ? 'B' : 'A') + t.slice(i + 1); }, want: 'ERR_TOKEN_SIGNATURE_INVALID' },
  { name: 'truncated signature', token: () => rsa.sign(good()).slice(0, -10), want: 'ERR_TOKEN_SIGNATURE_INVALID' },
  { name: 'empty signature with RS256', token: () => rsa.sign(good()).replace(/\.[^.]*$/, '.'), want: 'ERR_TOKEN_SIGNATURE_INVALID' },
  { name: 'empty signature with ES256', token: () => ec.sign(good()).replace(/\.[^.]*$/, '.'), want: 'ERR_TOKEN_SIGNATURE_INVALID' },
  { name: 'HS256 with the wrong secret', token: () => forgeToken({ alg: 'HS256' }, { iss: ISS_H, exp: NOW + 60 }, { hmacKey: 'w'.repeat(32) }), want: 'ERR_TOKEN_SIGNATURE_INVALID' },

  // two issuers, each bound to its own keys
  { name: 'claims issuer A, signed by B with B kid', token: () => rsaB.sign(good()), want: 'ERR_TOKEN_KEY_UNKNOWN' },
  { name: 'claims issuer A, signed by B with A kid', token: () => rsaB.sign(good(), { kid: rsa.kid }), want: 'ERR_TOKEN_SIGNATURE_INVALID' },
  { name: 'claims issuer A, signed by B without kid', token: () => rsaB.sign(good(), { kid: undefined }), want: 'ERR_TOKEN_SIGNATURE_INVALID' },
  { name: 'claims issuer B, signed by A with A kid', token: () => rsa.sign({ iss: ISS_B, exp: NOW + 60 }), want: 'ERR_TOKEN_KEY_UNKNOWN' },

  // keys named by the token are never used (RFC 8725 §3.10)
  { name: 'attacker jwk embedded, kid of the real key', token: () => attacker.sign(good(), { jwk: attacker.publicJwk, kid: rsa.kid }), want: 'ERR_TOKEN_SIGNATURE_INVALID' },
  { name: 'attacker jwk embedded, no kid', token: () => attacker.sign(good(), { jwk: attacker.publicJwk, kid: undefined, alg: 'RS256' }), want: 'ERR_TOKEN_SIGNATURE_INVALID' },
  { name: 'attacker jku (served, counting) with its own kid', token: () => attacker.sign(good(), { jku: headerUrl }), want: 'ERR_TOKEN_KEY_UNKNOWN' },
  { name: 'attacker x5u with its own kid', token: () => attacker.sign(good(), { x5u: headerUrl }), want: 'ERR_TOKEN_KEY_UNKNOWN' },
  { name: 'attacker x5c with the real kid', token: () => attacker.sign(good(), { x5c: ['MIIB'], kid: rsa.kid }), want: 'ERR_TOKEN_SIGNATURE_INVALID' },
  { name: 'a valid token carrying jku/x5u/jwk/x5c is verified with the issuer key', token: () => rsa.sign(good(), { jku: headerUrl, x5u: headerUrl, jwk: attacker.publicJwk, x5c: ['MIIB'] }), want: 'ok' },

  // structure
  { name: 'two segments', token: () => rsa.sign(good()).split('.').slice(0, 2).join('.'), want: 'ERR_TOKEN_MALFORMED' },
  { name: 'four segments', token: () => `${rsa.sign(good())}.abc`, want: 'ERR_TOKEN_MALFORMED' },
  { name: 'four segments are refused before the issuer is looked up', token: () => `${rsa.sign(good({ iss: 'https://x.test' }))}.abc`, want: 'ERR_TOKEN_MALFORMED' },
  { name: 'five segments (JWE)', token: () => `${base64url('{"alg":"RSA-OAEP","enc":"A256GCM"}')}.a.b.c.d`, want: 'ERR_TOKEN_MALFORMED' },
  { name: 'one segment', token: () => 'not-a-jwt', want: 'ERR_TOKEN_MALFORMED' },
  { name: 'empty string', token: () => '', want: 'ERR_TOKEN_MALFORMED' },
  { name: 'empty header segment', token: () => `.${base64url(JSON.stringify(good()))}.c2ln`, want: 'ERR_TOKEN_MALFORMED' },
  { name: 'header not JSON', token: () => forgeToken('not json', good(), 'c2ln'), want: 'ERR_TOKEN_MALFORMED' },
  { name: 'header a JSON array', token: () => forgeToken('["alg","RS256"]', good(), 'c2ln'), want: 'ERR_TOKEN_MALFORMED' },
  { name: 'header JSON null', token: () => forgeToken('null', good(), 'c2ln'), want: 'ERR_TOKEN_MALFORMED' },
  { name: 'header not UTF-8', token: () => `${base64url(Buffer.from([0x7b, 0xff, 0x7d]))}.${base64url(JSON.stringify(good()))}.c2ln`, want: 'ERR_TOKEN_MALFORMED' },
  { name: 'payload not JSON', token: () => forgeToken({ alg: 'RS256' }, 'hello', 'c2ln'), want: 'ERR_TOKEN_MALFORMED' },
  { name: 'payload a JSON string', token: () => forgeToken({ alg: 'RS256' }, '"x"', 'c2ln'), want: 'ERR_TOKEN_MALFORMED' },
  { name: 'standard base64 characters', token: () => rsa.sign(good()).replace(/\.([^.]*)$/, '.+/$1'), want: 'ERR_TOKEN_MALFORMED' },
  { name: 'base64 padding', token: () => `${rsa.sign(good())}==`, want: 'ERR_TOKEN_MALFORMED' },
  // extract.ts only looks for space and tab (all a header can carry); other whitespace, from a decoded query
  // parameter or cookie, must still be refused here.
  ...['\n', '\r', '\v', '\f', '\u00a0', '\u2028'].map((ws) => ({
    name: `whitespace ${JSON.stringify(ws)} inside a segment`,
    token: () => rsa.sign(good()).replace(/\.(.)/, `.$1${ws}`),
    want: 'ERR_TOKEN_MALFORMED' as const,
  })),
  { name: 'impossible base64url length', token: () => rsa.sign(good()).replace(/^([^.]*)\./, '$1A.'), want: 'ERR_TOKEN_MALFORMED' },
  { name: 'alg missing', token: () => rsa.sign(good(), { alg: undefined }), want: 'ERR_TOKEN_MALFORMED' },
  { name: 'alg not a string', token: () => rsa.sign(good(), { alg: 256 }), want: 'ERR_TOKEN_MALFORMED' },
  { name: 'kid not a string', token: () => rsa.sign(good(), { kid: 1 }), want: 'ERR_TOKEN_MALFORMED' },

  // crit (RFC 7515 §4.1.11) and b64 (RFC 7797)
  { name: 'unknown crit', token: () => rsa.sign(good(), { crit: ['x-unknown'], 'x-unknown': 1 }), want: 'ERR_TOKEN_CRIT_UNSUPPORTED' },
  { name: 'crit b64 (unencoded payload)', token: () => rsa.sign(good(), { crit: ['b64'], b64: false }), want: 'ERR_TOKEN_CRIT_UNSUPPORTED' },
  { name: 'crit naming a registered claim', token: () => rsa.sign(good(), { crit: ['exp'], exp: 1 }), want: 'ERR_TOKEN_CRIT_UNSUPPORTED' },
  { name: 'crit empty', token: () => rsa.sign(good(), { crit: [] }), want: 'ERR_TOKEN_MALFORMED' },
  { name: 'crit not an array', token: () => rsa.sign(good(), { crit: 'x' }), want: 'ERR_TOKEN_MALFORMED' },
  { name: 'b64 without crit', token: () => rsa.sign(good(), { b64: false }), want: 'ERR_TOKEN_MALFORMED' },

  // issuer selection
  { name: 'unknown iss', token: () => rsa.sign(good({ iss: 'https://evil.test' })), want: 'ERR_TOKEN_ISSUER_UNKNOWN' },
  { name: 'iss missing', token: () => rsa.sign(good({ iss: undefined })), want: 'ERR_TOKEN_ISSUER_UNKNOWN' },
  { name: 'iss not a string', token: () => rsa.sign(good({ iss: [ISS_A] })), want: 'ERR_TOKEN_ISSUER_UNKNOWN' },
  { name: 'iss differing by a trailing slash', token: () => rsa.sign(good({ iss: `${ISS_A}/` })), want: 'ERR_TOKEN_ISSUER_UNKNOWN' },
  { name: 'iss differing by case', token: () => rsa.sign(good({ iss: ISS_A.toUpperCase() })), want: 'ERR_TOKEN_ISSUER_UNKNOWN' },
  { name: 'issuer not allowed on the route', token: () => rsa.sign(good()), allowed: ['b'], want: 'ERR_TOKEN_ISSUER_UNKNOWN' },
  { name: 'issuer allowed on the route', token: () => rsa.sign(good()), allowed: ['b', 'a'], want: 'ok' },

  // time claims with leeway (RFC 7519 §4.1.4, §4.1.5)
  { name: 'expired beyond leeway', token: () => rsa.sign(good({ exp: NOW - LEEWAY - 1 })), want: 'ERR_TOKEN_EXPIRED' },
  { name: 'exp exactly now minus leeway is expired', token: () => rsa.sign(good({ exp: NOW - LEEWAY })), want: 'ERR_TOKEN_EXPIRED' },
  { name: 'expired within leeway is accepted', token: () => rsa.sign(good({ exp: NOW - LEEWAY + 1 })), want: 'ok' },
  { name: 'nbf beyond leeway', token: () => rsa.sign(good({ nbf: NOW + LEEWAY + 1 })), want: 'ERR_TOKEN_NOT_YET_VALID' },
  { name: 'nbf within leeway is accepted', token: () => rsa.sign(good({ nbf: NOW + LEEWAY })), want: 'ok' },
  { name: 'iat in the future beyond leeway', token: () => rsa.sign(good({ iat: NOW + LEEWAY + 1 })), want: 'ERR_TOKEN_CLAIM_INVALID' },
  { name: 'iat in the future within leeway', token: () => rsa.sign(good({ iat: NOW + LEEWAY })), want: 'ok' },
  { name: 'exp not a number', token: () => rsa.sign(good({ exp: String(NOW + 300) })), want: 'ERR_TOKEN_CLAIM_INVALID' },
  { name: 'nbf not a number', token: () => rsa.sign(good({ nbf: 'yesterday' })), want: 'ERR_TOKEN_CLAIM_INVALID' },
  { name: 'iat not a number', token: () => rsa.sign(good({ iat: true })), want: 'ERR_TOKEN_CLAIM_INVALID' },
  { name: 'a token valid now is expired an hour later', token: () => rsa.sign(good()), now: NOW + 3600, want: 'ERR_TOKEN_EXPIRED' },

  // audience (RFC 7519 §4.1.3, any-of)
  { name: 'wrong aud', token: () => rsa.sign(good({ aud: 'someone-else' })), want: 'ERR_TOKEN_AUDIENCE_MISMATCH' },
  { name: 'aud array with one accepted value', token: () => rsa.sign(good({ aud: ['x', 'other-api'] })), want: 'ok' },
  { name: 'aud array with no accepted value', token: () => rsa.sign(good({ aud: ['x', 'y'] })), want: 'ERR_TOKEN_AUDIENCE_MISMATCH' },
  { name: 'aud empty array', token: () => rsa.sign(good({ aud: [] })), want: 'ERR_TOKEN_AUDIENCE_MISMATCH' },
  { name: 'aud missing when audiences are configured', token: () => rsa.sign(good({ aud: undefined })), want: 'ERR_TOKEN_CLAIM_MISSING' },
  { name: 'aud not a string', token: () => rsa.sign(good({ aud: 42 })), want: 'ERR_TOKEN_CLAIM_INVALID' },
  { name: 'aud unchecked when the issuer has no audiences', token: () => rsaB.sign({ iss: ISS_B, aud: 'anything', exp: NOW + 60 }), want: 'ok' },

  // required claims
  { name: 'missing required sub', token: () => rsa.sign(good({ sub: undefined })), want: 'ERR_TOKEN_CLAIM_MISSING' },
  { name: 'required sub is null', token: () => rsa.sign(good({ sub: null })), want: 'ERR_TOKEN_CLAIM_MISSING' },
  { name: 'missing exp', token: () => rsa.sign(good({ exp: undefined })), want: 'ERR_TOKEN_CLAIM_MISSING' },
];

for (const c of CASES) {
  test(`verifyToken: ${c.name} -> ${c.want}`, async () => {
    const token = c.token();
    let got: string;
    try {
      const verified = await verifyToken(token, registry, c.allowed ?? [], c.now ?? NOW);
      got = 'ok';
      assert.ok(verified.issuer.config.issuer === verified.claims.iss);
    } catch (error) {
      if (!isProxyError(error)) throw error;
      got = error.code;
      const signature = token.split('.')[2] ?? '';
      for (const text of [error.message, error.detail ?? '']) {
        assert.ok(token === '' || !text.includes(token), 'the token must never appear in a message');
        assert.ok(signature.length < 8 || !text.includes(signature), 'the signature must never appear in a message');
      }
      assert.ok(error.detail !== undefined && error.detail.length > 0, `${error.code} carries an operator detail`);
    }
    assert.equal(got, c.want);
    // The request path's form gives the same answer and returns a refusal instead of throwing it.
    const direct = verifyTokenNow(token, registry, c.allowed ?? [], c.now ?? NOW);
    const answer = direct instanceof Promise ? await direct.then(() => 'ok', (error: unknown) => (isProxyError(error) ? error.code : 'thrown')) : isProxyError(direct) ? direct.code : 'ok';
    assert.equal(answer, c.want, 'verifyTokenNow');
  });
}

test('header URLs (jku, x5u) were never fetched', () => {
  // Runs after the cases above (node:test runs top-level tests in order); the server counts every request.
  assert.equal(headerUrlHits, 0);
});

test('strict base64url: every character outside the alphabet, in any segment, is refused as malformed', async () => {
  // The parser checks strictness around Node's lenient decoder (re-encoding what it decoded); this compares
  // its verdict with the plain definition on generated tokens: a valid token with one character inserted
  // or replaced. Strict is the alphabet, a possible length, and the canonical form (zero padding bits,
  // RFC 4648 §3.5). Characters above U+00FF whose low byte is in the alphabet are the ones Node's decoder
  // would read as that byte. A strict mutant may verify (the same character again); a non-strict one must
  // be refused as not base64url, whatever the character and wherever it lands.
  const ALPHABET = /^[A-Za-z0-9_-]*$/;
  const strictSegment = (seg: string, n: number): boolean =>
    (seg !== '' || n === 2) && ALPHABET.test(seg) && seg.length % 4 !== 1 && Buffer.from(seg, 'base64url').toString('base64url') === seg;
  const outside = ['+', '/', '=', ' ', '\t', '%', '.', '$', '\u0000', '\u007f', '\u00e9', '\u00ff', '\u0100', '\u0141', '\u012d', '\u015f', '\u4141', '\u3000', '\ud83d\ude00'];
  const inside = 'AZaz09-_Qgw';
  const base = rsa.sign(good());
  let seed = 42;
  const next = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  let refusedInside = 0;
  for (let i = 0; i < 900; i++) {
    const pool = i % 3 === 0 ? inside : outside;
    const char = typeof pool === 'string' ? pool[next(pool.length)]! : pool[next(pool.length)]!;
    // Every third replacement lands on the last character, where padding bits live.
    const at = i % 6 === 3 ? base.length - 1 : next(base.length + 1);
    const token = i % 2 === 0 ? base.slice(0, at) + char + base.slice(at) : base.slice(0, at) + char + base.slice(at + 1);
    const segments = token.split('.');
    const strict = segments.length === 3 && segments.every(strictSegment);
    const error = await verifyToken(token, registry, [], NOW).then(() => undefined, (e: unknown) => e);
    if (error === undefined && strict) continue;
    assert.ok(isProxyError(error), `mutant ${i} verified: ${JSON.stringify(char)} at ${at}`);
    const notBase64url = error.code === 'ERR_TOKEN_MALFORMED' && /not base64url|not canonical|segments instead of 3/.test(error.detail ?? '');
    assert.equal(notBase64url, !strict, `mutant ${i} (${JSON.stringify(char)} at ${at}): ${error.code} ${error.detail}`);
    if (strict === false && /not canonical/.test(error.detail ?? '')) refusedInside += 1;
  }
  assert.ok(refusedInside > 0, 'no mutant exercised non-zero padding bits');
});

test('strict base64url: every character at each edge of each segment, inserted or replacing, gets the plain definition\'s verdict', async () => {
  // The edges are where the parser's length and padding-bit reasoning could slip: the first and last
  // character of a segment, just past its end, and the segment's length moving to each residue mod 4.
  const ALPHABET = /^[A-Za-z0-9_-]*$/;
  const strictSegment = (seg: string, n: number): boolean =>
    (seg !== '' || n === 2) && ALPHABET.test(seg) && seg.length % 4 !== 1 && Buffer.from(seg, 'base64url').toString('base64url') === seg;
  const chars = ['+', '/', '=', '==', ' ', '\t', '\n', '%', '$', '\u0000', '\u007f', '\u0080', '\u00c1', '\u00ff', '\u0141', '\u0100', '\u4141', '\ud83d', '\ud83d\ude00', 'A', 'B', 'Q', 'g', 'w', 'x', '0', '-', '_', 'AA', 'AAA'];
  const base = rsa.sign(good());
  const starts = [0, base.indexOf('.') + 1, base.lastIndexOf('.') + 1];
  const ends = [base.indexOf('.'), base.lastIndexOf('.'), base.length];
  let cases = 0;
  for (let s = 0; s < 3; s++) {
    for (const at of [starts[s]!, ends[s]! - 1, ends[s]!]) {
      for (const char of chars) {
        for (const replace of [false, true]) {
          if (replace && at === ends[s]) continue; // that would replace the dot
          const token = base.slice(0, at) + char + base.slice(replace ? at + 1 : at);
          const segments = token.split('.');
          const strict = segments.length === 3 && segments.every(strictSegment);
          const error = await verifyToken(token, registry, [], NOW).then(() => undefined, (e: unknown) => e);
          cases += 1;
          if (error === undefined && strict) continue;
          assert.ok(isProxyError(error), `${JSON.stringify(char)} at ${at} verified`);
          const notBase64url = error.code === 'ERR_TOKEN_MALFORMED' && /not base64url|not canonical/.test(error.detail ?? '');
          assert.equal(notBase64url, !strict, `${JSON.stringify(char)} ${replace ? 'replacing' : 'inserted'} at ${at}: ${error.code} ${error.detail}`);
        }
      }
    }
  }
  assert.ok(cases > 400);
});

test('a character above U+00FF is not read as its low byte (Ł is not A)', async () => {
  const token = rsa.sign(good());
  const at = token.indexOf('A');
  assert.ok(at >= 0);
  const aliased = token.slice(0, at) + '\u0141' + token.slice(at + 1);
  await assert.rejects(verifyToken(aliased, registry, [], NOW), { code: 'ERR_TOKEN_MALFORMED' });
});

test('a verified token reports claims, header and expiry', async () => {
  const token = ec.sign(good({ roles: ['r'] }));
  const verified = await verifyToken(token, registry, [], NOW);
  assert.deepEqual(verified.claims, good({ roles: ['r'] }));
  assert.deepEqual(verified.header, { alg: 'ES256', kid: ec.kid, typ: 'JWT' });
  assert.equal(verified.issuer.config.id, 'a');
  assert.equal(verified.expiresAt, NOW + 300);
  const noKid = await verifyToken(hs.sign({ iss: ISS_H, exp: NOW + 5 }, { kid: undefined, typ: undefined }), registry, [], NOW);
  assert.deepEqual(noKid.header, { alg: 'HS256' });
});

test('without an explicit now, the current time is used', async () => {
  const real = Math.floor(Date.now() / 1000);
  await verifyToken(rsa.sign(good({ exp: real + 600, iat: real, nbf: real })), registry, []);
  await assert.rejects(verifyToken(rsa.sign(good({ exp: real - 600 })), registry, []), { code: 'ERR_TOKEN_EXPIRED' });
});

test('mapJoseError maps every jose error code, in one table', () => {
  const payload = {};
  const table: [unknown, string][] = [
    [new joseErrors.JWSSignatureVerificationFailed(), 'ERR_TOKEN_SIGNATURE_INVALID'],
    [new joseErrors.JWSInvalid('x'), 'ERR_TOKEN_MALFORMED'],
    [new joseErrors.JWTInvalid('x'), 'ERR_TOKEN_MALFORMED'],
    [new joseErrors.JWEInvalid('x'), 'ERR_TOKEN_MALFORMED'],
    [new joseErrors.JWEDecryptionFailed(), 'ERR_TOKEN_MALFORMED'],
    [new joseErrors.JOSEAlgNotAllowed('x'), 'ERR_TOKEN_ALG_NOT_ALLOWED'],
    [new joseErrors.JOSENotSupported('x'), 'ERR_TOKEN_ALG_NOT_ALLOWED'],
    [new joseErrors.JWTExpired('x', payload, 'exp', 'check_failed'), 'ERR_TOKEN_EXPIRED'],
    [new joseErrors.JWTClaimValidationFailed('x', payload, 'nbf', 'check_failed'), 'ERR_TOKEN_NOT_YET_VALID'],
    [new joseErrors.JWTClaimValidationFailed('x', payload, 'aud', 'check_failed'), 'ERR_TOKEN_AUDIENCE_MISMATCH'],
    [new joseErrors.JWTClaimValidationFailed('x', payload, 'iss', 'check_failed'), 'ERR_TOKEN_ISSUER_UNKNOWN'],
    [new joseErrors.JWTClaimValidationFailed('x', payload, 'sub', 'missing'), 'ERR_TOKEN_CLAIM_MISSING'],
    [new joseErrors.JWTClaimValidationFailed('x', payload, 'iat', 'check_failed'), 'ERR_TOKEN_CLAIM_INVALID'],
    [new joseErrors.JWTClaimValidationFailed('x', payload, 'exp', 'invalid'), 'ERR_TOKEN_CLAIM_INVALID'],
    [new joseErrors.JWKInvalid('x'), 'ERR_TOKEN_KEY_UNKNOWN'],
    [new joseErrors.JWKSInvalid('x'), 'ERR_TOKEN_KEY_UNKNOWN'],
    [new joseErrors.JWKSNoMatchingKey(), 'ERR_TOKEN_KEY_UNKNOWN'],
    [new joseErrors.JWKSMultipleMatchingKeys(), 'ERR_TOKEN_KEY_UNKNOWN'],
    [new joseErrors.JWKSTimeout(), 'ERR_KEYS_UNAVAILABLE'],
    [new TypeError('RS256 requires key modulusLength to be 2048 bits or larger'), 'ERR_TOKEN_KEY_UNKNOWN'],
    [new Error('boom'), 'ERR_INTERNAL'],
    [null, 'ERR_INTERNAL'],
  ];
  for (const [error, code] of table) assert.equal(mapJoseError(error).code, code, String((error as Error | null)?.constructor?.name));
  const classes = Object.values(joseErrors).filter((value) => typeof value === 'function' && 'code' in value);
  const mapped = new Set(table.map(([error]) => (error as { code?: string } | null)?.code));
  for (const errorClass of classes) {
    const code = (errorClass as unknown as { code: string }).code;
    if (code !== 'ERR_JOSE_GENERIC') assert.ok(mapped.has(code), `jose ${code} has a row in this table`);
  }
});

test('known headers: a header is remembered only once a key verified it, and a remembered one gives the same verdicts', async () => {
  // crit is refused however often it comes: were a refused header remembered, the second check would skip
  // the header rules and this signed token would verify.
  const crit = rsa.sign(good(), { crit: ['exp'] });
  for (let i = 0; i < 2; i++) await assert.rejects(verifyToken(crit, registry, [], NOW), { code: 'ERR_TOKEN_CRIT_UNSUPPORTED' });
  // A header no key verified is not remembered: made-up kids, and a forged signature under a fresh header.
  const before = knownHeaderCount();
  for (let i = 0; i < 5; i++) {
    await assert.rejects(verifyToken(rsa.sign(good(), { kid: `made-up-${i}` }), registry, [], NOW), { code: 'ERR_TOKEN_KEY_UNKNOWN' });
    await assert.rejects(verifyToken(withPayload(rsa.sign(good(), { fresh: `forged-${i}` }), good({ sub: 'mallory' })), registry, [], NOW), { code: 'ERR_TOKEN_SIGNATURE_INVALID' });
  }
  assert.equal(knownHeaderCount(), before);
  const token = rsa.sign(good(), { fresh: 'remembered' });
  await verifyToken(token, registry, [], NOW);
  assert.equal(knownHeaderCount(), Math.min(before + 1, MAX_KNOWN_HEADERS), 'verified: remembered (unless full)');
  await verifyToken(token, registry, [], NOW);
  const [h, p, s] = token.split('.') as [string, string, string];
  // The same header text, now remembered, with a bad rest of the token.
  await assert.rejects(verifyToken(withPayload(token, good({ sub: 'mallory' })), registry, [], NOW), { code: 'ERR_TOKEN_SIGNATURE_INVALID' });
  await assert.rejects(verifyToken(`${h}.${base64url('not json')}.${s}`, registry, [], NOW), { code: 'ERR_TOKEN_MALFORMED', detail: 'the payload is not JSON' });
  await assert.rejects(verifyToken(`${h}.${p.slice(0, 10)}+${p.slice(11)}.${s}`, registry, [], NOW), { code: 'ERR_TOKEN_MALFORMED' });
  await assert.rejects(verifyToken(`${h}.${p}.${s}.x.y`, registry, [], NOW), { code: 'ERR_TOKEN_MALFORMED' });
});

test('known headers: bounded, however many headers a key signs', async () => {
  for (let i = 0; i < MAX_KNOWN_HEADERS + 20; i++) await verifyToken(rsa.sign(good(), { n: i }), registry, [], NOW);
  assert.equal(knownHeaderCount(), MAX_KNOWN_HEADERS);
});
