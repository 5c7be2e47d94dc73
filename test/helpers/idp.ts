/**
 * A real OpenID Provider (oidc-provider 9) on 127.0.0.1, port 0, for integration tests: discovery, JWKS and
 * a token endpoint issuing RFC 9068 JWT access tokens through the `client_credentials` grant with RFC 8707
 * resource indicators. Tests get tokens over HTTP exactly as a service would, and can rotate the signing key.
 *
 * oidc-provider fixes its keystore at construction, so `rotateKeys()` builds a new Provider with the new key
 * set and swaps it in behind the same server, port and issuer; requests already in flight finish on the old
 * one. Every Provider shares one in-memory adapter store, so nothing stateful is lost by the swap.
 */
import { generateKeyPair, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { Provider } from 'oidc-provider';
import type { Adapter, AdapterPayload, ClientMetadata, Configuration } from 'oidc-provider';

const generateKeyPairAsync = promisify(generateKeyPair);

/** Resource (and so `aud`) used when neither `startIdp` nor `getAccessToken` names one. */
export const DEFAULT_AUDIENCE = 'https://api.portcullis.test';
/** Scopes the client may request and the resource servers accept. */
export const DEFAULT_SCOPES: readonly string[] = ['logs:read', 'logs:write', 'admin'];

/** Options of {@link startIdp}. */
export interface StartIdpOptions {
  /** Default resource indicator; the access token's `aud` equals it. Default {@link DEFAULT_AUDIENCE}. */
  readonly audience?: string;
  /** Scopes the client may request. Default {@link DEFAULT_SCOPES}. */
  readonly scopes?: readonly string[];
  /** Claims added to every access token (they may override `sub`, not wise for `iss`/`aud`/`exp`). */
  readonly claims?: Readonly<Record<string, unknown>>;
  /** Access token lifetime in seconds. Default 300. */
  readonly accessTokenTtlSeconds?: number;
}

/** Options of {@link TestIdp.getAccessToken}. */
export interface AccessTokenRequest {
  /** RFC 8707 resource indicator, an absolute URI; becomes `aud`. Default: the IdP's audience. */
  readonly resource?: string;
  /** Space-separated; only scopes the client and resource allow are granted (others are dropped silently). */
  readonly scope?: string;
  /**
   * Claims for this token only, merged over the IdP-wide ones. Implemented with a fresh client registered
   * for this one request (so concurrent requests cannot see each other's claims); `sub` and `client_id` are
   * that client's id unless `claims` sets `sub`.
   */
  readonly claims?: Readonly<Record<string, unknown>>;
}

/** A running test IdP. */
export interface TestIdp {
  /** `http://127.0.0.1:<port>`, no trailing slash; the `iss` of every token. */
  readonly issuer: string;
  readonly discoveryUrl: string;
  readonly jwksUri: string;
  readonly tokenEndpoint: string;
  readonly audience: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** POSTs to the token endpoint (client_secret_basic, client_credentials) and returns `access_token`. */
  getAccessToken(opts?: AccessTokenRequest): Promise<string>;
  /** The kid new tokens are signed with. */
  currentKid(): string;
  /** Kids the JWKS endpoint publishes, newest first. */
  publishedKids(): string[];
  /**
   * Switches signing to a new RS256 key with a new kid. With `keepOld: true` (the default, as real IdPs do
   * during a rollover) the previous keys stay in the JWKS so tokens already issued still verify; with
   * `keepOld: false` the JWKS holds only the new key, as after an emergency revocation.
   */
  rotateKeys(opts?: { keepOld?: boolean }): Promise<void>;
  /** Closes the server and every open connection. Idempotent. */
  close(): Promise<void>;
}

type PrivateJwk = Record<string, unknown> & { kid: string };

let keyCounter = 0;

async function generateSigningJwk(): Promise<PrivateJwk> {
  const { privateKey } = await generateKeyPairAsync('rsa', { modulusLength: 2048 });
  keyCounter += 1;
  // A readable, unique kid: tests compare kids before and after a rotation.
  const kid = `test-idp-${keyCounter}-${randomBytes(4).toString('hex')}`;
  return { ...(privateKey.export({ format: 'jwk' }) as Record<string, unknown>), kid, alg: 'RS256', use: 'sig' };
}

interface StoredEntry {
  readonly payload: AdapterPayload;
  readonly expiresAt: number;
}

/**
 * A Map-backed adapter. oidc-provider's own memory adapter prints a "development-only" warning on every
 * construction; this one is silent and is shared by the Providers a rotation creates.
 */
function createAdapterFactory(store: Map<string, StoredEntry>): (model: string) => Adapter {
  const read = (key: string): AdapterPayload | undefined => {
    const entry = store.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return entry.payload;
  };
  return (model) => {
    const keyFor = (id: string): string => `${model}:${id}`;
    return {
      async upsert(id, payload, expiresIn) {
        const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
        store.set(keyFor(id), { payload, expiresAt });
        if (typeof payload.uid === 'string') store.set(`uid:${payload.uid}`, { payload: { id }, expiresAt });
        if (typeof payload.userCode === 'string') {
          store.set(`userCode:${payload.userCode}`, { payload: { id }, expiresAt });
        }
      },
      async find(id) {
        return read(keyFor(id));
      },
      async findByUid(uid) {
        const ref = read(`uid:${uid}`);
        return typeof ref?.id === 'string' ? read(keyFor(ref.id)) : undefined;
      },
      async findByUserCode(userCode) {
        const ref = read(`userCode:${userCode}`);
        return typeof ref?.id === 'string' ? read(keyFor(ref.id)) : undefined;
      },
      async consume(id) {
        const payload = read(keyFor(id));
        if (payload !== undefined) payload.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id) {
        store.delete(keyFor(id));
      },
      async revokeByGrantId(grantId) {
        for (const [key, entry] of store) {
          if (entry.payload.grantId === grantId) store.delete(key);
        }
      },
    };
  };
}

/**
 * Starts the IdP. Always `close()` it (in `after`/`t.after`), or the test process keeps the port open.
 *
 * @example
 * const idp = await startIdp();
 * t.after(() => idp.close());
 * const token = await idp.getAccessToken({ scope: 'logs:read' });
 */
export async function startIdp(opts: StartIdpOptions = {}): Promise<TestIdp> {
  const audience = opts.audience ?? DEFAULT_AUDIENCE;
  const scopes = [...(opts.scopes ?? DEFAULT_SCOPES)];
  const ttl = opts.accessTokenTtlSeconds ?? 300;
  const clientId = 'portcullis-test';
  const clientSecret = randomBytes(24).toString('base64url');
  const store = new Map<string, StoredEntry>();
  const claimsByClient = new Map<string, Readonly<Record<string, unknown>>>();

  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const server = createServer((req, res) => {
    if (handler === undefined) {
      res.writeHead(503).end();
      return;
    }
    handler(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  const clientMetadata = (id: string, secret: string): ClientMetadata => ({
    client_id: id,
    client_secret: secret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: scopes.join(' '),
  });

  const configure = (keys: readonly PrivateJwk[]): Configuration => ({
    adapter: createAdapterFactory(store),
    clients: [clientMetadata(clientId, clientSecret)],
    jwks: { keys: keys.map((key) => ({ ...key })) },
    scopes,
    // Cookies only matter for interactive flows, which are off; fixed random keys avoid a Koa keygrip warning.
    cookies: { keys: [randomBytes(16).toString('hex')] },
    // Setting these replaces oidc-provider defaults that print "you SHOULD change" notices when first called.
    clientBasedCORS: () => false,
    ttl: { ClientCredentials: ttl, AccessToken: ttl },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? audience,
        // Any absolute URI is a resource server here, so tests can ask for a token meant for another API.
        getResourceServerInfo: async () => ({
          scope: scopes.join(' '),
          accessTokenFormat: 'jwt',
          accessTokenTTL: ttl,
          jwt: { sign: { alg: 'RS256' } },
        }),
        useGrantedResource: async () => true,
      },
    },
    formats: {
      customizers: {
        jwt: (_ctx, token, jwt) => {
          const perToken = token.clientId === undefined ? undefined : claimsByClient.get(token.clientId);
          Object.assign(jwt.payload, opts.claims, perToken);
        },
      },
    },
  });

  let keys: PrivateJwk[] = [await generateSigningJwk()];
  const install = (): Provider => {
    const provider = new Provider(issuer, configure(keys));
    handler = provider.callback();
    return provider;
  };
  const provider = install();
  const tokenEndpoint = provider.urlFor('token');
  const jwksUri = provider.urlFor('jwks');
  const discoveryUrl = `${issuer}/.well-known/openid-configuration`;

  const requestToken = async (id: string, secret: string, request: AccessTokenRequest): Promise<string> => {
    const body = new URLSearchParams({ grant_type: 'client_credentials', resource: request.resource ?? audience });
    if (request.scope !== undefined) body.set('scope', request.scope);
    // RFC 6749 §2.3.1: client id and secret are form-urlencoded before the Basic encoding.
    const basic = Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');
    const response = await fetch(tokenEndpoint, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`test IdP token request failed: ${response.status} ${text}`);
    const parsed = JSON.parse(text) as { access_token?: unknown };
    if (typeof parsed.access_token !== 'string') throw new Error(`test IdP answered without access_token: ${text}`);
    return parsed.access_token;
  };

  let closed: Promise<void> | undefined;

  return {
    issuer,
    discoveryUrl,
    jwksUri,
    tokenEndpoint,
    audience,
    clientId,
    clientSecret,
    async getAccessToken(request = {}) {
      if (request.claims === undefined) return requestToken(clientId, clientSecret, request);
      const id = `portcullis-test-${randomUUID()}`;
      const secret = randomBytes(24).toString('base64url');
      store.set(`Client:${id}`, { payload: { ...clientMetadata(id, secret) }, expiresAt: Infinity });
      claimsByClient.set(id, request.claims);
      try {
        return await requestToken(id, secret, request);
      } finally {
        store.delete(`Client:${id}`);
        claimsByClient.delete(id);
      }
    },
    currentKid() {
      return keys[0]!.kid;
    },
    publishedKids() {
      return keys.map((key) => key.kid);
    },
    async rotateKeys(rotation = {}) {
      const next = await generateSigningJwk();
      // The first key that fits is the one oidc-provider signs with, so the new key goes first.
      keys = rotation.keepOld === false ? [next] : [next, ...keys];
      install();
    },
    close() {
      closed ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)));
        // Keep-alive sockets (fetch's pool, jose's JWKS fetches) would otherwise hold close() open.
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
