/**
 * loadStaticKeys on real files written at run time: what loads, with which kid/alg/kind, and the precise
 * refusals (private PEMs, short secrets, weak or unsupported keys) whose messages name the source but never
 * the key material.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StaticKeySpec } from '../../src/config/types.ts';
import { importJwk, loadStaticKeys } from '../../src/auth/static-keys.ts';
import type { LoadedKey } from '../../src/auth/static-keys.ts';
import { createTestCertificate, createTestSigner } from '../helpers/keys.ts';
import type { TestSigner } from '../helpers/keys.ts';

let dir: string;
let rsa: TestSigner;
let ec: TestSigner;
let ed: TestSigner;
const SECRET = 's'.repeat(40);

function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'portcullis-static-keys-'));
  [rsa, ec, ed] = await Promise.all([createTestSigner('RS256'), createTestSigner('ES256'), createTestSigner('EdDSA')]);
});

after(() => rmSync(dir, { recursive: true, force: true }));

interface LoadCase {
  readonly name: string;
  readonly spec: () => StaticKeySpec;
  readonly env?: NodeJS.ProcessEnv;
  /** Expected keys, in order. */
  readonly want: () => readonly { kid: string | undefined; alg: string | undefined; kind: 'public' | 'secret'; type: string }[];
  /** The loaded key must equal this public key (proves the right half was read). */
  readonly same?: () => TestSigner;
}

const LOADS: LoadCase[] = [
  {
    name: 'PEM public key with kid and alg',
    spec: () => ({ kind: 'pem_file', path: file('rsa.pem', rsa.publicPem), kid: 'k1', alg: 'RS256' }),
    want: () => [{ kid: 'k1', alg: 'RS256', kind: 'public', type: 'rsa' }],
    same: () => rsa,
  },
  {
    name: 'PEM public key without kid or alg',
    spec: () => ({ kind: 'pem_file', path: file('ec.pem', ec.publicPem) }),
    want: () => [{ kid: undefined, alg: undefined, kind: 'public', type: 'ec' }],
    same: () => ec,
  },
  {
    name: 'certificate (the public key inside it)',
    spec: () => ({ kind: 'pem_file', path: file('rsa.crt', createTestCertificate(rsa)), kid: 'cert' }),
    want: () => [{ kid: 'cert', alg: undefined, kind: 'public', type: 'rsa' }],
    same: () => rsa,
  },
  {
    name: 'Ed25519 certificate',
    spec: () => ({ kind: 'pem_file', path: file('ed.crt', createTestCertificate(ed)) }),
    want: () => [{ kid: undefined, alg: undefined, kind: 'public', type: 'ed25519' }],
    same: () => ed,
  },
  {
    name: 'JWK file',
    spec: () => ({ kind: 'jwk_file', path: file('ed.jwk', JSON.stringify(ed.publicJwk)) }),
    want: () => [{ kid: ed.kid, alg: 'EdDSA', kind: 'public', type: 'ed25519' }],
    same: () => ed,
  },
  {
    name: 'JWK file holding a private JWK: only the public half is imported',
    spec: () => ({
      kind: 'jwk_file',
      path: file('ec-private.jwk', JSON.stringify({ ...ec.privateKey.export({ format: 'jwk' }), kid: 'p' })),
    }),
    want: () => [{ kid: 'p', alg: undefined, kind: 'public', type: 'ec' }],
    same: () => ec,
  },
  {
    name: 'JWKS file, encryption keys skipped',
    spec: () => ({
      kind: 'jwks_file',
      path: file(
        'set.jwks',
        JSON.stringify({ keys: [rsa.publicJwk, { ...ec.publicJwk, kid: 'enc', use: 'enc', alg: undefined }, ec.publicJwk] }),
      ),
    }),
    want: () => [
      { kid: rsa.kid, alg: 'RS256', kind: 'public', type: 'rsa' },
      { kid: ec.kid, alg: 'ES256', kind: 'public', type: 'ec' },
    ],
  },
  {
    name: 'HMAC secret from env, trailing newline trimmed',
    spec: () => ({ kind: 'hmac_env', name: 'HS_SECRET', kid: 'h1' }),
    env: { HS_SECRET: `${SECRET}\n` },
    want: () => [{ kid: 'h1', alg: undefined, kind: 'secret', type: 'secret:40' }],
  },
  {
    name: 'HMAC secret from file, CRLF trimmed',
    spec: () => ({ kind: 'hmac_file', path: file('hs.secret', `${SECRET}\r\n`) }),
    want: () => [{ kid: undefined, alg: undefined, kind: 'secret', type: 'secret:40' }],
  },
  {
    name: 'HMAC secret of exactly 32 bytes',
    spec: () => ({ kind: 'hmac_env', name: 'HS_SECRET' }),
    env: { HS_SECRET: 'x'.repeat(32) },
    want: () => [{ kid: undefined, alg: undefined, kind: 'secret', type: 'secret:32' }],
  },
];

function typeOf(key: LoadedKey): string {
  return key.key.type === 'secret' ? `secret:${key.key.symmetricKeySize}` : (key.key.asymmetricKeyType ?? '?');
}

for (const c of LOADS) {
  test(`loadStaticKeys loads: ${c.name}`, async () => {
    const keys = await loadStaticKeys(c.spec(), c.env ?? {});
    assert.deepEqual(
      keys.map((k) => ({ kid: k.kid, alg: k.alg, kind: k.kind, type: typeOf(k) })),
      c.want(),
    );
    for (const key of keys) assert.equal(key.key.type === 'secret' ? 'secret' : key.key.type, key.kind === 'secret' ? 'secret' : 'public');
    if (c.same !== undefined) assert.ok(keys[0]!.key.equals(c.same().publicKey!), 'the loaded key is the signer public key');
  });
}

test('an HMAC secret keeps inner whitespace and its exact bytes', async () => {
  const [key] = await loadStaticKeys({ kind: 'hmac_env', name: 'S' }, { S: `  ${SECRET}  \n` });
  assert.deepEqual(key!.key.export(), Buffer.from(`  ${SECRET}  `));
});

interface RefuseCase {
  readonly name: string;
  readonly spec: () => StaticKeySpec;
  readonly env?: NodeJS.ProcessEnv;
  readonly message: RegExp;
}

const REFUSALS: RefuseCase[] = [
  {
    name: 'a PKCS#8 private key PEM',
    spec: () => ({ kind: 'pem_file', path: file('priv.pem', rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()) }),
    message: /priv\.pem: this file holds a PRIVATE key; .*public key or certificate/,
  },
  {
    name: 'a traditional EC private key PEM',
    spec: () => ({ kind: 'pem_file', path: file('ec-priv.pem', ec.privateKey.export({ type: 'sec1', format: 'pem' }).toString()) }),
    message: /PRIVATE key/,
  },
  {
    name: 'a private key bundled with a public key',
    spec: () => ({
      kind: 'pem_file',
      path: file('bundle.pem', ed.publicPem + ed.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()),
    }),
    message: /PRIVATE key/,
  },
  {
    name: 'two public keys in one PEM file',
    spec: () => ({ kind: 'pem_file', path: file('two.pem', rsa.publicPem + ec.publicPem) }),
    message: /exactly one PEM block .* found 2/,
  },
  { name: 'a file that is not PEM', spec: () => ({ kind: 'pem_file', path: file('junk.pem', 'hello') }), message: /found 0/ },
  {
    name: 'a PEM whose alg does not fit the key',
    spec: () => ({ kind: 'pem_file', path: file('ec2.pem', ec.publicPem), alg: 'RS256' }),
    message: /alg RS256 does not fit a EC prime256v1 key/,
  },
  {
    name: 'an unsupported alg',
    spec: () => ({ kind: 'pem_file', path: file('ec3.pem', ec.publicPem), alg: 'ES256K' }),
    message: /alg ES256K is not supported/,
  },
  {
    name: 'an RSA key under 2048 bits',
    spec: () => {
      const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
      return { kind: 'pem_file', path: file('weak.pem', publicKey.export({ type: 'spki', format: 'pem' }).toString()) };
    },
    message: /RSA 1024-bit key cannot verify .* at least 2048 bits/,
  },
  {
    name: 'an X25519 (key agreement) key',
    spec: () => {
      const { publicKey } = generateKeyPairSync('x25519');
      return { kind: 'pem_file', path: file('x.pem', publicKey.export({ type: 'spki', format: 'pem' }).toString()) };
    },
    message: /x25519 key cannot verify/,
  },
  { name: 'a missing file', spec: () => ({ kind: 'pem_file', path: join(dir, 'nope.pem') }), message: /nope\.pem: cannot read the key file \(ENOENT\)/ },
  {
    name: 'an HMAC secret of 31 bytes',
    spec: () => ({ kind: 'hmac_env', name: 'S' }),
    env: { S: 'x'.repeat(31) + '\n' },
    message: /env:S: the HMAC secret is 31 bytes; at least 32 are required/,
  },
  { name: 'an empty HMAC file', spec: () => ({ kind: 'hmac_file', path: file('empty.secret', '\n') }), message: /is 0 bytes/ },
  { name: 'an unset env var', spec: () => ({ kind: 'hmac_env', name: 'NOT_SET' }), message: /environment variable NOT_SET is not set/ },
  { name: 'a JWK file that is not JSON', spec: () => ({ kind: 'jwk_file', path: file('bad.jwk', '{') }), message: /bad\.jwk: not valid JSON/ },
  {
    name: 'a JWKS given as jwk_file',
    spec: () => ({ kind: 'jwk_file', path: file('set-as-jwk.json', JSON.stringify(rsa.jwks)) }),
    message: /this is a JWK Set; use jwks_file/,
  },
  {
    name: 'a JWK for encryption only',
    spec: () => ({ kind: 'jwk_file', path: file('enc.jwk', JSON.stringify({ ...rsa.publicJwk, use: 'enc' })) }),
    message: /"use" is enc/,
  },
  {
    name: 'a JWKS without keys array',
    spec: () => ({ kind: 'jwks_file', path: file('nokeys.jwks', '{"key":[]}') }),
    message: /needs a "keys" array/,
  },
  {
    name: 'a JWKS with only encryption keys',
    spec: () => ({ kind: 'jwks_file', path: file('enc.jwks', JSON.stringify({ keys: [{ ...rsa.publicJwk, use: 'enc' }] })) }),
    message: /the set has no signing keys/,
  },
  {
    name: 'a JWKS with an unsupported curve names the key index',
    spec: () => ({ kind: 'jwks_file', path: file('crv.jwks', JSON.stringify({ keys: [rsa.publicJwk, { kty: 'EC', crv: 'secp256k1', x: 'AA', y: 'AA' }] })) }),
    message: /keys\[1\]: EC curve secp256k1 is not supported/,
  },
  {
    name: 'a JWKS with invalid RSA members',
    spec: () => ({ kind: 'jwks_file', path: file('inv.jwks', JSON.stringify({ keys: [{ kty: 'RSA', n: 42, e: 'AQAB' }] })) }),
    message: /keys\[0\]: the RSA key members are invalid/,
  },
  {
    name: 'a JWK whose alg does not fit its key',
    spec: () => ({ kind: 'jwk_file', path: file('mis.jwk', JSON.stringify({ ...ec.publicJwk, alg: 'ES384' })) }),
    message: /"alg" ES384 does not fit a EC prime256v1 key/,
  },
  {
    name: 'an oct JWK that is too short',
    spec: () => ({ kind: 'jwk_file', path: file('short.jwk', JSON.stringify({ kty: 'oct', k: Buffer.from('short').toString('base64url') })) }),
    message: /5-byte secret is too weak/,
  },
];

for (const c of REFUSALS) {
  test(`loadStaticKeys refuses: ${c.name}`, async () => {
    await assert.rejects(loadStaticKeys(c.spec(), c.env ?? {}), (error: Error) => {
      assert.match(error.message, c.message);
      return true;
    });
  });
}

test('refusal messages never contain key material', async () => {
  const privatePem = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const secret = 'q'.repeat(20);
  for (const [spec, env, material] of [
    [{ kind: 'pem_file', path: file('leak.pem', privatePem) }, {}, privatePem.split('\n')[1]!],
    [{ kind: 'hmac_env', name: 'S' }, { S: secret }, secret],
    [{ kind: 'jwk_file', path: file('leak.jwk', JSON.stringify({ kty: 'RSA', n: 'bm90LWEta2V5', e: 'AQAB' })) }, {}, 'bm90LWEta2V5'],
  ] as const) {
    const error = await loadStaticKeys(spec, env).then(
      () => assert.fail('should refuse'),
      (e: Error) => e,
    );
    assert.ok(!error.message.includes(material), `leaked in: ${error.message}`);
  }
});

test('importJwk (remote rules): symmetric keys are never accepted from a URL; skips are classified', async () => {
  const hs = await createTestSigner('HS256');
  const table: [unknown, string][] = [
    [hs.publicJwk, 'secret_not_allowed'],
    [{ ...rsa.publicJwk, use: 'enc' }, 'not_signing'],
    [{ ...rsa.publicJwk, key_ops: ['encrypt'] }, 'not_signing'],
    [{ kty: 'OKP', crv: 'X25519', x: 'AA' }, 'unsupported_crv'],
    [{ kty: 'AKP', alg: 'ML-DSA-44' }, 'unsupported_alg'],
    [{ kty: 'XYZ' }, 'unsupported_kty'],
    [{ ...rsa.publicJwk, alg: 'RSA-OAEP' }, 'unsupported_alg'],
    [{ ...rsa.publicJwk, kid: 7 }, 'invalid'],
    [[], 'invalid'],
  ];
  for (const [jwk, reason] of table) {
    const imported = importJwk(jwk, 'https://idp/jwks', false);
    assert.equal(imported.ok ? 'ok' : imported.reason, reason, JSON.stringify(jwk));
  }
  const ok = importJwk({ ...rsa.publicJwk, key_ops: ['verify'] }, 'https://idp/jwks', false);
  assert.ok(ok.ok && ok.key.key.equals(rsa.publicKey!) && ok.key.source === 'https://idp/jwks');
});
