/**
 * Contestant "lean crypto.verify": the least a correct JWT proxy can do per request, with NO cache — the
 * reference for "every token is new". Per request: take the bearer token, split it, JSON-parse header and
 * payload, check alg, `crypto.verify` over a `KeyObject` imported once at start, check exp / iss / aud,
 * optionally copy claims to headers, strip Authorization, forward with undici (same code as passthrough).
 *
 *   node bench/contestants/lean-verify.ts --port 18102 --backend http://127.0.0.1:18080 \
 *     --alg RS256 --key public.pem --iss https://issuer.bench --aud bench-api [--claims x-user-id=sub] [--policy]
 */
import { createPublicKey, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { ServerResponse } from 'node:http';
import { createForwarder, forwardHeaders } from './forward.ts';
import { claimValue, exitOnSignals, policyAllows, readOptions } from './shared.ts';

const options = readOptions();
const key: KeyObject = createPublicKey(readFileSync(options.keyFile));
/** node:crypto digest per alg (null: EdDSA hashes internally) and JWS' raw r||s ECDSA encoding (RFC 7518 §3.4). */
const digest = options.alg === 'EdDSA' ? null : `sha${options.alg.slice(2)}`;
const verifyKey = options.alg.startsWith('ES') ? { key, dsaEncoding: 'ieee-p1363' as const } : key;
const forwarder = createForwarder(options.backend);
const DROP = new Set(['authorization', ...options.claimHeaders.map(([header]) => header)]);

const server = createServer((req, res) => {
  const claims = authenticate(req.headers.authorization);
  if (claims === undefined) return unauthorized(res);
  if (options.policy && !policyAllows(claims)) return forbidden(res);
  const headers = forwardHeaders(req.headers, DROP);
  for (const [header, path] of options.claimHeaders) {
    const value = claimValue(claims, path);
    if (value !== undefined) headers[header] = value;
  }
  forwarder.forward(req, res, headers);
});
server.keepAliveTimeout = 30_000;
server.listen(options.port, '127.0.0.1');
exitOnSignals(() => server.close());

function authenticate(authorization: string | undefined): Record<string, unknown> | undefined {
  if (authorization === undefined || !authorization.startsWith('Bearer ')) return undefined;
  const token = authorization.slice(7);
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  const [h, p, s] = parts as [string, string, string];
  let header: Record<string, unknown>;
  let claims: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>;
    claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (header.alg !== options.alg) return undefined;
  const signed = Buffer.from(token.slice(0, h.length + 1 + p.length), 'latin1');
  if (!verify(digest, signed, verifyKey, Buffer.from(s, 'base64url'))) return undefined;
  const now = Date.now() / 1000;
  if (typeof claims.exp !== 'number' || claims.exp <= now) return undefined;
  if (claims.iss !== options.issuer) return undefined;
  const aud = claims.aud;
  if (aud !== options.audience && !(Array.isArray(aud) && aud.includes(options.audience))) return undefined;
  return claims;
}

function forbidden(res: ServerResponse): void {
  res.writeHead(403, { 'content-type': 'application/json' });
  res.end('{"error":"forbidden"}');
}

function unauthorized(res: ServerResponse): void {
  res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer error="invalid_token"' });
  res.end('{"error":"invalid_token"}');
}
