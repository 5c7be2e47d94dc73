/**
 * Contestant "express-jwt": express 5 + express-jwt (jsonwebtoken underneath, given the PEM as its README
 * shows) + http-proxy-middleware (httpxy over node:http with a keep-alive agent). jsonwebtoken has no
 * EdDSA, so the harness does not start this contestant for EdDSA scenarios.
 *
 *   node bench/contestants/express-jwt.ts --port 18107 --backend http://127.0.0.1:18080 \
 *     --alg RS256 --key public.pem --iss https://issuer.bench --aud bench-api [--claims x-user-id=sub] [--policy]
 */
import { readFileSync } from 'node:fs';
import { Agent } from 'node:http';
import type { IncomingMessage } from 'node:http';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import { expressjwt } from 'express-jwt';
import type { Algorithm } from 'jsonwebtoken';
import { createProxyMiddleware } from 'http-proxy-middleware';
import { claimValue, exitOnSignals, policyAllows, readOptions } from './shared.ts';

const options = readOptions();
const app = express();
app.disable('x-powered-by');
app.disable('etag');

app.use(
  expressjwt({
    secret: readFileSync(options.keyFile, 'utf8'),
    algorithms: [options.alg as Algorithm],
    issuer: options.issuer,
    audience: options.audience,
  }),
);

if (options.policy) {
  app.use((req: Request, res: Response, next: NextFunction) => {
    if (policyAllows((req as Request & { auth?: unknown }).auth)) return next();
    res.status(403).json({ error: 'forbidden' });
  });
}

app.use(
  createProxyMiddleware({
    target: options.backend,
    agent: new Agent({ keepAlive: true, maxSockets: 128 }),
    on: {
      proxyReq: (proxyReq, req: IncomingMessage) => {
        proxyReq.removeHeader('authorization');
        const claims = (req as Request & { auth?: unknown }).auth;
        for (const [header, path] of options.claimHeaders) {
          const value = claimValue(claims, path);
          if (value !== undefined) proxyReq.setHeader(header, value);
          else proxyReq.removeHeader(header);
        }
      },
    },
  }),
);

// express-jwt reports a bad or missing token as an UnauthorizedError passed to next(err).
app.use((error: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
  res
    .status(error.status ?? 500)
    .set('www-authenticate', 'Bearer error="invalid_token"')
    .json({ error: 'invalid_token' });
});

const server = app.listen(options.port, '127.0.0.1');
server.keepAliveTimeout = 30_000;
exitOnSignals(() => server.close());
