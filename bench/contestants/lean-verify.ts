/**
 * Contestant "lean crypto.verify": the least a correct JWT proxy can do per request, with NO cache — the
 * reference for "every token is new". Per request: take the bearer token, split it, JSON-parse header and
 * payload, check alg, `crypto.verify` over a `KeyObject` imported once at start, check exp / iss / aud,
 * optionally copy claims to headers, strip Authorization, forward with undici (same code as passthrough).
 *
 *   node bench/contestants/lean-verify.ts --port 18102 --backend http://127.0.0.1:18080 \
 *     --alg RS256 --key public.pem --iss https://issuer.bench --aud bench-api [--claims x-user-id=sub] [--policy]
 */
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { ServerResponse } from 'node:http';
import { createForwarder, forwardHeaders } from './forward.ts';
import { createLeanAuthenticator } from './lean-auth.ts';
import { claimValue, exitOnSignals, policyAllows, readOptions } from './shared.ts';

const options = readOptions();
const authenticate = createLeanAuthenticator({
  alg: options.alg,
  key: createPublicKey(readFileSync(options.keyFile)),
  issuer: options.issuer,
  audience: options.audience,
});
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

function forbidden(res: ServerResponse): void {
  res.writeHead(403, { 'content-type': 'application/json' });
  res.end('{"error":"forbidden"}');
}

function unauthorized(res: ServerResponse): void {
  res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer error="invalid_token"' });
  res.end('{"error":"invalid_token"}');
}
