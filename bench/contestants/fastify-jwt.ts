/**
 * Contestant "fastify-jwt": fastify + @fastify/jwt (fast-jwt underneath, its verified-token cache left at
 * the default: off) + @fastify/http-proxy (@fastify/reply-from over undici), configured as their READMEs
 * show: a public key, an alg allow-list, `allowedIss` / `allowedAud`, `request.jwtVerify()` in a preHandler.
 *
 *   node bench/contestants/fastify-jwt.ts --port 18106 --backend http://127.0.0.1:18080 \
 *     --alg RS256 --key public.pem --iss https://issuer.bench --aud bench-api [--claims x-user-id=sub] [--policy]
 */
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import Fastify from 'fastify';
import type { FastifyReply, FastifyRequest } from 'fastify';
import fastifyJwt from '@fastify/jwt';
import fastifyHttpProxy from '@fastify/http-proxy';
import { claimValue, exitOnSignals, policyAllows, readOptions } from './shared.ts';

const options = readOptions();
const app = Fastify({ logger: false });

await app.register(fastifyJwt, {
  secret: { public: readFileSync(options.keyFile, 'utf8') },
  verify: { algorithms: [options.alg as 'RS256'], allowedIss: options.issuer, allowedAud: options.audience },
});

await app.register(fastifyHttpProxy, {
  upstream: options.backend,
  prefix: '/',
  preHandler: async (request: FastifyRequest, reply: FastifyReply) => {
    try {
      await request.jwtVerify();
    } catch {
      await reply
        .code(401)
        .header('www-authenticate', 'Bearer error="invalid_token"')
        .send({ error: 'invalid_token' });
      return;
    }
    if (options.policy && !policyAllows(request.user)) await reply.code(403).send({ error: 'forbidden' });
  },
  replyOptions: {
    rewriteRequestHeaders: (request, headers: IncomingHttpHeaders) => {
      const out: IncomingHttpHeaders = { ...headers };
      delete out.authorization;
      const claims = (request as FastifyRequest).user;
      for (const [header, path] of options.claimHeaders) {
        const value = claimValue(claims, path);
        if (value !== undefined) out[header] = value;
        else delete out[header];
      }
      return out;
    },
  },
});

await app.listen({ port: options.port, host: '127.0.0.1' });
exitOnSignals(() => void app.close());
