import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import type { JSONWebKeySet } from 'jose';
import { KEYGEN_ALGORITHMS, generateKeyFiles } from '../../src/tools/keygen.ts';
import type { GeneratedKeyFiles } from '../../src/tools/keygen.ts';
import { DEFAULT_TTL_MS, applyClaims, mintToken, parseClaimArg } from '../../src/tools/mint.ts';

const ISS = 'https://issuer.portcullis.test';
const AUD = 'logs-api';
// A fixed clock keeps iat/exp assertions exact; jwtVerify gets the same clock.
const NOW = Date.UTC(2030, 0, 1, 12, 0, 0);
const NOW_S = NOW / 1000;

let root: string;
const keys = new Map<string, GeneratedKeyFiles>();
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'portcullis-mint-'));
  for (const alg of KEYGEN_ALGORITHMS) {
    keys.set(alg, await generateKeyFiles({ alg, outDir: join(root, alg) }));
  }
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function keyFiles(alg: string): GeneratedKeyFiles {
  const files = keys.get(alg);
  assert.ok(files !== undefined, `keys for ${alg}`);
  return files;
}

async function jwksOf(files: GeneratedKeyFiles): Promise<ReturnType<typeof createLocalJWKSet>> {
  return createLocalJWKSet(JSON.parse(await readFile(files.jwksPath, 'utf8')) as JSONWebKeySet);
}

describe('mintToken', () => {
  for (const alg of KEYGEN_ALGORITHMS) {
    it(`mints an ${alg} token that verifies against the generated jwks.json`, async () => {
      const files = keyFiles(alg);
      const token = await mintToken({
        keyFile: files.privateKeyPath,
        iss: ISS,
        aud: AUD,
        sub: 'alice',
        claims: { realm_access: { roles: ['log-reader'] } },
        now: NOW,
      });
      const header = decodeProtectedHeader(token);
      assert.equal(header.alg, alg, 'alg inferred from the key');
      assert.equal(header.kid, files.kid, 'kid defaults to the thumbprint generateKeyFiles published');
      assert.equal(header.typ, 'JWT');

      const { payload } = await jwtVerify(token, await jwksOf(files), {
        issuer: ISS,
        audience: AUD,
        algorithms: [alg],
        currentDate: new Date(NOW),
      });
      assert.equal(payload.sub, 'alice');
      assert.equal(payload.iat, NOW_S);
      assert.equal(payload.exp, NOW_S + DEFAULT_TTL_MS / 1000);
      assert.equal(payload.nbf, undefined);
      assert.match(String(payload.jti), /^[0-9a-f-]{36}$/);
      assert.deepEqual(payload.realm_access, { roles: ['log-reader'] });
    });
  }

  it('reads the key from privateKeyPem and honours alg, kid, typ, ttl, nbf and audience arrays', async () => {
    const files = keyFiles('ES256');
    const token = await mintToken({
      privateKeyPem: await readFile(files.privateKeyPath, 'utf8'),
      alg: 'ES256',
      kid: files.kid,
      typ: 'at+jwt',
      iss: ISS,
      aud: [AUD, 'other'],
      ttlMs: 90_000,
      notBeforeMs: -30_000,
      now: NOW,
    });
    assert.equal(decodeProtectedHeader(token).typ, 'at+jwt');
    const { payload } = await jwtVerify(token, await jwksOf(files), {
      issuer: ISS,
      audience: 'other',
      currentDate: new Date(NOW),
    });
    assert.deepEqual(payload.aud, [AUD, 'other']);
    assert.equal(payload.exp, NOW_S + 90);
    assert.equal(payload.nbf, NOW_S - 30);
    assert.equal(payload.sub, undefined);
  });

  it('mints tokens that are expired or not yet valid when asked to', async () => {
    const files = keyFiles('EdDSA');
    const jwks = await jwksOf(files);
    const expired = await mintToken({ keyFile: files.privateKeyPath, iss: ISS, ttlMs: -60_000, now: NOW });
    await assert.rejects(jwtVerify(expired, jwks, { currentDate: new Date(NOW) }), { code: 'ERR_JWT_EXPIRED' });
    const early = await mintToken({ keyFile: files.privateKeyPath, iss: ISS, notBeforeMs: 60_000, now: NOW });
    await assert.rejects(jwtVerify(early, jwks, { currentDate: new Date(NOW) }), {
      code: 'ERR_JWT_CLAIM_VALIDATION_FAILED',
      claim: 'nbf',
    });
  });

  it('lets extra claims override registered ones and delete them with undefined', async () => {
    const files = keyFiles('ES256');
    const token = await mintToken({
      keyFile: files.privateKeyPath,
      iss: ISS,
      sub: 'alice',
      claims: { sub: 'mallory', exp: 'soon', iat: undefined },
      now: NOW,
    });
    // The signature is fine but jose refuses a non-numeric exp, which is exactly what such a test wants.
    await assert.rejects(jwtVerify(token, await jwksOf(files), { currentDate: new Date(NOW) }), {
      code: 'ERR_JWT_CLAIM_VALIDATION_FAILED',
      claim: 'exp',
    });
    const payload = decodeJwt(token);
    assert.equal(payload.sub, 'mallory');
    assert.equal(payload.exp, 'soon');
    assert.equal('iat' in payload, false);
  });

  it('gives every token its own jti', async () => {
    const keyFile = keyFiles('ES256').privateKeyPath;
    const a = await mintToken({ keyFile, iss: ISS, now: NOW });
    const b = await mintToken({ keyFile, iss: ISS, now: NOW });
    assert.notEqual(a, b);
  });

  it('infers ES384 from a P-384 key', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const token = await mintToken({ privateKeyPem: pem, iss: ISS, now: NOW });
    assert.equal(decodeProtectedHeader(token).alg, 'ES384');
    const { payload } = await jwtVerify(token, publicKey, { issuer: ISS, currentDate: new Date(NOW) });
    assert.equal(payload.iss, ISS);
  });

  it('signs PS256 with a plain RSA key when asked', async () => {
    const files = keyFiles('RS256');
    const token = await mintToken({ keyFile: files.privateKeyPath, alg: 'PS256', iss: ISS, now: NOW });
    assert.equal(decodeProtectedHeader(token).alg, 'PS256');
    const publicKey = createPublicKey(await readFile(files.publicKeyPath, 'utf8'));
    const { payload } = await jwtVerify(token, publicKey, { currentDate: new Date(NOW) });
    assert.equal(payload.iss, ISS);
  });

  it('signs with an HMAC secret without a default kid', async () => {
    const secret = randomBytes(32);
    const token = await mintToken({ secret, iss: ISS, aud: AUD, now: NOW });
    const header = decodeProtectedHeader(token);
    assert.equal(header.alg, 'HS256');
    assert.equal(header.kid, undefined);
    const { payload } = await jwtVerify(token, secret, { issuer: ISS, audience: AUD, currentDate: new Date(NOW) });
    assert.equal(payload.iss, ISS);
    const hs512 = await mintToken({ secret, alg: 'HS512', kid: 'shared', iss: ISS, now: NOW });
    assert.deepEqual(decodeProtectedHeader(hs512), { alg: 'HS512', typ: 'JWT', kid: 'shared' });
  });

  const refusals: Array<[string, () => Promise<unknown>, RegExp]> = [
    ['no key', () => mintToken({ iss: ISS }), /exactly one of keyFile, privateKeyPem and secret/],
    [
      'two keys',
      () => mintToken({ iss: ISS, secret: randomBytes(32), keyFile: keyFiles('ES256').privateKeyPath }),
      /exactly one of/,
    ],
    [
      'an algorithm the key cannot produce',
      () => mintToken({ iss: ISS, keyFile: keyFiles('ES256').privateKeyPath, alg: 'RS256' }),
      /algorithm RS256 cannot be used with a ec prime256v1 key/,
    ],
    [
      'a curve mismatch',
      () => mintToken({ iss: ISS, keyFile: keyFiles('ES256').privateKeyPath, alg: 'ES384' }),
      /algorithm ES384 cannot be used/,
    ],
    [
      'an RSA-PSS-only key',
      () =>
        mintToken({
          iss: ISS,
          privateKeyPem: generateKeyPairSync('rsa-pss', { modulusLength: 2048 })
            .privateKey.export({ format: 'pem', type: 'pkcs8' })
            .toString(),
        }),
      /RSA-PSS keys are not supported/,
    ],
    ['an asymmetric alg with a secret', () => mintToken({ iss: ISS, secret: randomBytes(32), alg: 'RS256' }), /secret/],
  ];
  for (const [name, run, message] of refusals) {
    it(`refuses ${name}`, async () => {
      await assert.rejects(run(), message);
    });
  }

  it('does not echo an unreadable private key in its error', async () => {
    // Not a key (base64 of "secret-secret-secret"); the markers are assembled so scanners do not flag it.
    const label = `${'PRIVATE'} KEY`;
    const garbage = `-----BEGIN ${label}-----\nc2VjcmV0LXNlY3JldC1zZWNyZXQ=\n-----END ${label}-----\n`;
    await assert.rejects(mintToken({ iss: ISS, privateKeyPem: garbage }), (error: unknown) => {
      assert.ok(error instanceof Error);
      assert.match(error.message, /cannot read a private key from privateKeyPem/);
      assert.equal(error.message.includes('c2VjcmV0'), false);
      return true;
    });
  });
});

describe('parseClaimArg', () => {
  const cases: Array<[string, string[], unknown]> = [
    ['sub=alice', ['sub'], 'alice'],
    ['n=42', ['n'], 42],
    ['f=-1.5', ['f'], -1.5],
    ['b=true', ['b'], true],
    ['x=null', ['x'], null],
    ['roles=["a","b"]', ['roles'], ['a', 'b']],
    ['o={"k":1}', ['o'], { k: 1 }],
    ['s="quoted"', ['s'], 'quoted'],
    ['s="42"', ['s'], '42'],
    ['z=007', ['z'], '007'],
    ['e=', ['e'], ''],
    ['eq=a=b', ['eq'], 'a=b'],
    ['sp=a b', ['sp'], 'a b'],
    ['broken=[1,', ['broken'], '[1,'],
    ['realm_access.roles=["a","b"]', ['realm_access', 'roles'], ['a', 'b']],
    ['a.b.c=1', ['a', 'b', 'c'], 1],
    ['[https://example.com/roles]=["x"]', ['https://example.com/roles'], ['x']],
    ['[urn:example:claims:tenant]=acme', ['urn:example:claims:tenant'], 'acme'],
    ['a.[b.c].d=1', ['a', 'b.c', 'd'], 1],
    ['[a=b]=c', ['a=b'], 'c'],
    ['ns.[https://x.test/r]=1', ['ns', 'https://x.test/r'], 1],
  ];
  for (const [arg, path, value] of cases) {
    it(`parses ${arg}`, () => {
      assert.deepEqual(parseClaimArg(arg), [path, value]);
    });
  }

  const invalid: Array<[string, RegExp]> = [
    ['noequals', /missing =/],
    ['a.b', /missing =/],
    ['=v', /empty claim name segment/],
    ['a..b=1', /empty claim name segment/],
    ['.a=1', /empty claim name segment/],
    ['a.=1', /empty claim name segment/],
    ['[]=1', /empty claim name segment/],
    ['[abc=1', /unclosed \[/],
    ['a[b]=1', /unexpected "\["/],
    ['[a]b=1', /unexpected "b"/],
    ['__proto__.polluted=1', /__proto__ is not a claim name/],
    ['a.[__proto__]=1', /__proto__ is not a claim name/],
  ];
  for (const [arg, message] of invalid) {
    it(`refuses ${arg}`, () => {
      assert.throws(() => parseClaimArg(arg), (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.ok(error.message.startsWith(`invalid claim ${JSON.stringify(arg)}: `), error.message);
        assert.match(error.message, message);
        return true;
      });
    });
  }
});

describe('applyClaims', () => {
  it('builds nested objects, merges siblings and lets later pairs win', () => {
    const target: Record<string, unknown> = { keep: 1 };
    const result = applyClaims(
      target,
      [
        'realm_access.roles=["a"]',
        'realm_access.env=staging',
        '[https://example.com/roles]=["x"]',
        'sub=alice',
        'sub=bob',
      ].map(parseClaimArg),
    );
    assert.equal(result, target);
    assert.deepEqual(target, {
      keep: 1,
      realm_access: { roles: ['a'], env: 'staging' },
      'https://example.com/roles': ['x'],
      sub: 'bob',
    });
  });

  it('descends into objects given as JSON values', () => {
    const target = applyClaims({}, ['a={"b":{"c":1}}', 'a.b.d=2'].map(parseClaimArg));
    assert.deepEqual(target, { a: { b: { c: 1, d: 2 } } });
  });

  it('refuses to run a path through a non-object', () => {
    assert.throws(() => applyClaims({}, ['a=1', 'a.b=2'].map(parseClaimArg)), /claim a is not an object/);
    assert.throws(() => applyClaims({}, ['a=[1]', 'a.b=2'].map(parseClaimArg)), /claim a is not an object/);
  });

  it('never touches prototypes', () => {
    assert.throws(() => applyClaims({}, [[['__proto__', 'polluted'], true]]), /__proto__/);
    assert.throws(() => applyClaims({}, [[[], true]]), /at least one segment/);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});
