import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import type { JSONWebKeySet } from 'jose';
import { DEFAULT_AUDIENCE, startIdp } from '../helpers/idp.ts';
import type { TestIdp } from '../helpers/idp.ts';

async function getJson(url: string): Promise<Record<string, unknown>> {
  const response = await fetch(url);
  assert.equal(response.status, 200, `GET ${url}`);
  return (await response.json()) as Record<string, unknown>;
}

async function publishedKids(idp: TestIdp): Promise<string[]> {
  const jwks = (await getJson(idp.jwksUri)) as unknown as JSONWebKeySet;
  return jwks.keys.map((key) => String(key.kid));
}

// jose refetches a remote JWKS on an unknown kid at most once per cooldown (30 s by default); a zero
// cooldown lets one key set follow a rotation within the test, as the proxy's JWKS source must.
function remoteJwks(idp: TestIdp): ReturnType<typeof createRemoteJWKSet> {
  return createRemoteJWKSet(new URL(idp.jwksUri), { cooldownDuration: 0 });
}

describe('test IdP (oidc-provider)', () => {
  it('publishes discovery metadata for its loopback issuer', async (t) => {
    const idp = await startIdp();
    t.after(() => idp.close());
    assert.match(idp.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
    const discovery = await getJson(idp.discoveryUrl);
    assert.equal(discovery.issuer, idp.issuer);
    assert.equal(discovery.jwks_uri, idp.jwksUri);
    assert.equal(discovery.token_endpoint, idp.tokenEndpoint);
    assert.ok((discovery.grant_types_supported as string[]).includes('client_credentials'));
    assert.deepEqual(await publishedKids(idp), [idp.currentKid()]);
  });

  it('issues JWT access tokens that verify against its JWKS with issuer and audience checked', async (t) => {
    const idp = await startIdp();
    t.after(() => idp.close());
    const token = await idp.getAccessToken({ scope: 'logs:read' });
    const header = decodeProtectedHeader(token);
    assert.equal(header.alg, 'RS256');
    assert.equal(header.typ, 'at+jwt');
    assert.equal(header.kid, idp.currentKid());

    const jwks = remoteJwks(idp);
    const { payload } = await jwtVerify(token, jwks, { issuer: idp.issuer, audience: DEFAULT_AUDIENCE });
    assert.equal(payload.aud, DEFAULT_AUDIENCE);
    assert.equal(payload.scope, 'logs:read');
    assert.equal(payload.client_id, idp.clientId);
    assert.equal(payload.sub, idp.clientId);
    assert.equal(typeof payload.jti, 'string');
    assert.equal(typeof payload.exp, 'number');

    await assert.rejects(jwtVerify(token, jwks, { issuer: idp.issuer, audience: 'https://other.test' }), {
      code: 'ERR_JWT_CLAIM_VALIDATION_FAILED',
      claim: 'aud',
    });
    await assert.rejects(jwtVerify(token, jwks, { issuer: 'https://elsewhere.test', audience: DEFAULT_AUDIENCE }), {
      code: 'ERR_JWT_CLAIM_VALIDATION_FAILED',
      claim: 'iss',
    });
  });

  it('sets aud to the requested resource and drops scopes the client may not have', async (t) => {
    const idp = await startIdp({ audience: 'https://logs.portcullis.test', scopes: ['logs:read'] });
    t.after(() => idp.close());
    const jwks = remoteJwks(idp);

    const byDefault = await jwtVerify(await idp.getAccessToken(), jwks, { issuer: idp.issuer });
    assert.equal(byDefault.payload.aud, 'https://logs.portcullis.test');
    assert.equal(byDefault.payload.scope, undefined, 'no scope requested, none granted');

    const other = await idp.getAccessToken({ resource: 'https://other.test', scope: 'logs:read admin' });
    const { payload } = await jwtVerify(other, jwks, { issuer: idp.issuer, audience: 'https://other.test' });
    assert.equal(payload.scope, 'logs:read');
  });

  it('adds IdP-wide and per-token claims', async (t) => {
    const idp = await startIdp({ claims: { tenant: 'acme' } });
    t.after(() => idp.close());
    const jwks = remoteJwks(idp);
    const [withRoles, plain] = await Promise.all([
      idp.getAccessToken({ claims: { sub: 'alice', realm_access: { roles: ['log-reader'] } } }),
      idp.getAccessToken(),
    ]);
    const a = await jwtVerify(withRoles, jwks, { issuer: idp.issuer, audience: DEFAULT_AUDIENCE });
    assert.equal(a.payload.sub, 'alice');
    assert.deepEqual(a.payload.realm_access, { roles: ['log-reader'] });
    assert.equal(a.payload.tenant, 'acme');
    const b = await jwtVerify(plain, jwks, { issuer: idp.issuer, audience: DEFAULT_AUDIENCE });
    assert.equal(b.payload.sub, idp.clientId);
    assert.equal(b.payload.realm_access, undefined);
    assert.equal(b.payload.tenant, 'acme');
  });

  it('authenticates the client at the token endpoint', async (t) => {
    const idp = await startIdp();
    t.after(() => idp.close());
    const response = await fetch(idp.tokenEndpoint, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${idp.clientId}:wrong`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ grant_type: 'client_credentials', resource: DEFAULT_AUDIENCE }),
    });
    assert.equal(response.status, 401);
    assert.equal(((await response.json()) as { error?: string }).error, 'invalid_client');
  });

  it('rotates to a new key and keeps the old one published by default', async (t) => {
    const idp = await startIdp();
    t.after(() => idp.close());
    const jwks = remoteJwks(idp);
    const oldToken = await idp.getAccessToken();
    const oldKid = idp.currentKid();
    await jwtVerify(oldToken, jwks, { issuer: idp.issuer, audience: DEFAULT_AUDIENCE });

    await idp.rotateKeys();
    const newKid = idp.currentKid();
    assert.notEqual(newKid, oldKid);
    assert.deepEqual(await publishedKids(idp), [newKid, oldKid]);

    const newToken = await idp.getAccessToken();
    assert.equal(decodeProtectedHeader(newToken).kid, newKid);
    // Same key set object: the unknown kid makes it refetch and find the new key.
    await jwtVerify(newToken, jwks, { issuer: idp.issuer, audience: DEFAULT_AUDIENCE });
    await jwtVerify(oldToken, remoteJwks(idp), { issuer: idp.issuer, audience: DEFAULT_AUDIENCE });
  });

  it('with keepOld: false drops the old key from the JWKS', async (t) => {
    const idp = await startIdp();
    t.after(() => idp.close());
    const oldToken = await idp.getAccessToken();
    const oldKid = idp.currentKid();

    await idp.rotateKeys({ keepOld: false });
    const newKid = idp.currentKid();
    assert.notEqual(newKid, oldKid);
    assert.deepEqual(await publishedKids(idp), [newKid]);
    assert.deepEqual(idp.publishedKids(), [newKid]);

    const jwks = remoteJwks(idp);
    const newToken = await idp.getAccessToken();
    assert.equal(decodeProtectedHeader(newToken).kid, newKid);
    await jwtVerify(newToken, jwks, { issuer: idp.issuer, audience: DEFAULT_AUDIENCE });
    await assert.rejects(jwtVerify(oldToken, jwks, { issuer: idp.issuer, audience: DEFAULT_AUDIENCE }), {
      code: 'ERR_JWKS_NO_MATCHING_KEY',
    });
  });

  it('keeps the same issuer and port across rotations', async (t) => {
    const idp = await startIdp();
    t.after(() => idp.close());
    const before = await getJson(idp.discoveryUrl);
    await idp.rotateKeys({ keepOld: false });
    await idp.rotateKeys();
    assert.deepEqual(await getJson(idp.discoveryUrl), before);
    assert.equal(idp.publishedKids().length, 2);
  });

  it('closes the server and its connections, idempotently', async () => {
    const idp = await startIdp();
    await getJson(idp.discoveryUrl); // leaves a keep-alive connection in fetch's pool
    await idp.close();
    await idp.close();
    await assert.rejects(fetch(idp.discoveryUrl));
  });
});
