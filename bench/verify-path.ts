/**
 * What checking a new token costs beyond the crypto, without HTTP: Portcullis's whole check of a token it
 * has not seen (the token cache's miss path: strict base64url parse, header rules, issuer, key, signature,
 * claims, the doorkeeper) against the lean contestant's check (bench/contestants/lean-auth.ts) and bare
 * `crypto.verify` over bytes prepared in advance, in one process, for valid and forged tokens per algorithm.
 *
 * The load bench compares the same two in HTTP, where a host that slows down for seconds at a time moves a
 * row by ±20-40% (bench/README.md, "Noise"). Here the three take turns every few milliseconds, each on its
 * own new tokens of the round, in an order that turns each round, so a slow stretch of the host falls on all
 * three alike. Means, not medians: a scavenge lands in whichever path's turn it falls, and the garbage a path
 * makes is part of its cost. Every token is new, and one verifier serves every round, as in the proxy.
 * "Beyond the crypto" is what the issue's "verification must not cost more than the crypto itself" is about.
 *
 *   node bench/verify-path.ts            (about 15 s)
 */
import { createPublicKey, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createIssuerRegistry } from '../src/auth/issuers.ts';
import { createTokenVerifier } from '../src/auth/token-cache.ts';
import type { VerifiedToken } from '../src/auth/verify.ts';
import { compileConfig } from '../src/config/compile.ts';
import { loadConfigText } from '../src/config/load.ts';
import { p1363ToDer } from '../src/auth/signature.ts';
import { ProxyError } from '../src/errors.ts';
import { createLeanAuthenticator } from './contestants/lean-auth.ts';
import { ALGS, AUDIENCE, ISSUER, forgeTokens, generateKeys, mintFile } from './lib/tokens.ts';
import type { Alg, BenchKey } from './lib/tokens.ts';

/** Tokens per round; each path checks each of them once. */
const TOKENS = 200;
/** Measured rounds, after one discarded warm-up round. */
const ROUNDS = 30;

const dir = mkdtempSync(join(tmpdir(), 'portcullis-verify-path-'));
try {
  const { keys, jwksFile } = generateKeys(dir);
  const file = join(dir, 'portcullis.yaml');
  const config = await compileConfig(
    loadConfigText(
      `listen: 127.0.0.1:0
admin: false
issuers:
  bench:
    issuer: ${ISSUER}
    keys:
      - { jwks_file: ${jwksFile} }
    audiences: [${AUDIENCE}]
upstreams:
  backend:
    targets: ["http://127.0.0.1:9"]
routes:
  - id: bench
    match: { path_prefix: / }
    upstream: backend
`,
      file,
    ),
  );
  const registry = await createIssuerRegistry(config.issuers);

  console.log(`Per token, µs: the mean over ${ROUNDS} rounds × ${TOKENS} tokens, every token new to every path; in each round the three check`);
  console.log('that round\'s tokens back to back. beyond crypto: the path\'s mean minus the bare check\'s.\n');
  const header = ['alg', 'tokens', 'bare crypto.verify', 'lean', 'Portcullis', 'lean beyond crypto', 'Portcullis beyond crypto', 'lean ÷ Portcullis'];
  const lines: string[][] = [header];
  for (const alg of ALGS) {
    const key = keys[alg];
    const publicKey = createPublicKey(key.privatePem);
    const lean = createLeanAuthenticator({ alg, key: publicKey, issuer: ISSUER, audience: AUDIENCE });
    for (const kind of ['valid', 'forged'] as const) {
      // One set of tokens per round (the first round warms up and is discarded), so that one long-lived
      // verifier, as in the proxy, meets every token once: its doorkeeper would admit a second sighting.
      const count = (ROUNDS + 1) * TOKENS;
      const tokens = kind === 'valid' ? await mintTokens(key, count) : forgeTokens(key, 0, count, 3600);
      const bare = bareChecks(alg, publicKey, tokens);
      // The header lean takes, built and flattened here: the proxy receives it, it does not build it.
      const headers = tokens.map((token) => `Bearer ${token}`);
      for (const header of headers) header.charCodeAt(header.length - 1);
      const verifier = createTokenVerifier(registry, { maxEntries: config.limits.tokenCacheEntries, maxTokenBytes: 4096 });
      const expect = kind === 'valid';
      const times = { bare: 0, lean: 0, portcullis: 0 };
      for (let round = 0; round <= ROUNDS; round++) {
        const from = round * TOKENS;
        const run = {
          bare: () => perToken(from, (i) => bare[i]!(), expect, 'bare crypto.verify'),
          lean: () => perToken(from, (i) => lean(headers[i]) !== undefined, expect, 'lean'),
          portcullis: () => perToken(from, (i) => accepted(verifier.check(tokens[i]!, [])), expect, 'Portcullis'),
        };
        // The order turns each round, so that a collection the previous path's garbage causes does not
        // always land in the same path's turn.
        const order = (['bare', 'lean', 'portcullis'] as const).map((_, k, all) => all[(k + round) % 3]!);
        for (const path of order) {
          const us = run[path]();
          if (round > 0) times[path] += us / ROUNDS;
        }
      }
      lines.push([
        alg,
        kind,
        fmt(times.bare),
        fmt(times.lean),
        fmt(times.portcullis),
        fmt(times.lean - times.bare),
        fmt(times.portcullis - times.bare),
        (times.lean / times.portcullis).toFixed(2),
      ]);
    }
  }
  registry.close();
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  for (const [n, l] of lines.entries()) {
    console.log(l.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
    if (n === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
  console.log('\nlean ÷ Portcullis reads like a throughput ratio of the checks alone; the load');
  console.log('bench\'s every-token-new target is ≥ 0.95 of lean with HTTP around it. Lean passes ES256 keys as');
  console.log('{ key, dsaEncoding }, the documented form, which on Node 24 adds tens of µs per call (bench/crypto-verify.ts).');
} finally {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Per token, `crypto.verify` over the signing input and signature decoded in advance, in the cheapest form
 * node offers (a bare KeyObject; ES256 signatures re-encoded to DER beforehand): the floor under any check.
 */
function bareChecks(alg: Alg, key: KeyObject, tokens: readonly string[]): Array<() => boolean> {
  const digest = alg === 'EdDSA' ? null : 'sha256';
  return tokens.map((token) => {
    const dot = token.lastIndexOf('.');
    const input = Buffer.from(token.slice(0, dot), 'latin1');
    const raw = Buffer.from(token.slice(dot + 1), 'base64url');
    const signature = alg === 'ES256' ? p1363ToDer(raw, 32)! : raw;
    return () => verify(digest, input, key, signature);
  });
}

/** µs per call of `check` over tokens `from`..`from + TOKENS`; every answer must be `expect` (a bench that checks nothing measures nothing). */
function perToken(from: number, check: (i: number) => boolean, expect: boolean, name: string): number {
  const started = process.hrtime.bigint();
  let wrong = 0;
  for (let i = from; i < from + TOKENS; i++) if (check(i) !== expect) wrong++;
  const ns = Number(process.hrtime.bigint() - started);
  if (wrong > 0) throw new Error(`${name}: ${wrong} of ${TOKENS} tokens were ${expect ? 'refused' : 'accepted'}`);
  return ns / 1000 / TOKENS;
}

/** A verdict of the cache's synchronous path: with static keys, a promise would mean a key fetch, not a check. */
function accepted(result: VerifiedToken | ProxyError | Promise<VerifiedToken>): boolean {
  if (result instanceof Promise) throw new Error('Portcullis: the check went asynchronous (a key fetch?)');
  return !(result instanceof ProxyError);
}

/** `count` distinct valid tokens, signed on worker threads (mintFile) and read back. */
async function mintTokens(key: BenchKey, count: number): Promise<string[]> {
  const file = join(dir, `${key.alg}.tokens`);
  await mintFile(key, 0, count, 3600, file);
  return readFileSync(file, 'utf8').split('\n').filter((line) => line !== '');
}

function fmt(us: number): string {
  return us.toFixed(2);
}
