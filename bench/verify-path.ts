/**
 * What checking a new token costs beyond the crypto, without HTTP: Portcullis's whole check of a token it
 * has not seen (the token cache's miss path: strict base64url parse, header rules, issuer, key, signature,
 * claims, the doorkeeper) against the lean contestant's check (bench/contestants/lean-auth.ts) and bare
 * `crypto.verify` over bytes prepared in advance, in one process, for valid and forged tokens per algorithm.
 *
 * The load bench compares the same two in HTTP, where a host that slows down for seconds at a time moves a
 * row by ±20-40% (bench/README.md, "host probe"). Here the three run back to back on the same tokens, round
 * after round, and each round's difference to the bare check is taken before the median, so a slow stretch
 * of the host moves all three together. "Beyond the crypto" is what the issue's "verification must not cost
 * more than the crypto itself" is about.
 *
 *   node bench/verify-path.ts            (about 15 s)
 */
import { createPublicKey, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createIssuerRegistry } from '../src/auth/issuers.ts';
import { createTokenVerifier } from '../src/auth/token-cache.ts';
import type { TokenVerifier } from '../src/auth/token-cache.ts';
import { compileConfig } from '../src/config/compile.ts';
import { loadConfigText } from '../src/config/load.ts';
import { p1363ToDer } from '../src/auth/signature.ts';
import { ProxyError } from '../src/errors.ts';
import { createLeanAuthenticator } from './contestants/lean-auth.ts';
import { median } from './lib/report.ts';
import { ALGS, AUDIENCE, ISSUER, forgeOne, generateKeys, mintOne } from './lib/tokens.ts';
import type { Alg } from './lib/tokens.ts';

/** Tokens per round; every round checks each once per path. */
const TOKENS = 400;
/** Measured rounds (after one discarded warm-up round); the table shows medians. */
const ROUNDS = 15;

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
  /** A fresh verifier per round: each token is new to it, as in the load bench's `distinct`. */
  const newVerifier = (): TokenVerifier => createTokenVerifier(registry, { maxEntries: config.limits.tokenCacheEntries, maxTokenBytes: 4096 });

  console.log(`Per token, µs: median of ${ROUNDS} rounds × ${TOKENS} tokens (each path checks every token once per round, back to back).`);
  console.log('beyond crypto: the path minus bare crypto.verify in the same round (median of the rounds\' differences).\n');
  const header = ['alg', 'tokens', 'bare crypto.verify', 'lean', 'Portcullis', 'lean beyond crypto', 'Portcullis beyond crypto', 'lean ÷ Portcullis'];
  const lines: string[][] = [header];
  for (const alg of ALGS) {
    const key = keys[alg];
    const publicKey = createPublicKey(key.privatePem);
    const lean = createLeanAuthenticator({ alg, key: publicKey, issuer: ISSUER, audience: AUDIENCE });
    for (const kind of ['valid', 'forged'] as const) {
      const tokens = Array.from({ length: TOKENS }, (_, n) => (kind === 'valid' ? mintOne(key, n, 3600) : forgeOne(key, n, 3600)));
      const bare = bareChecks(alg, publicKey, tokens);
      const expect = kind === 'valid';
      const times = { bare: [] as number[], lean: [] as number[], portcullis: [] as number[] };
      for (let round = 0; round <= ROUNDS; round++) {
        const verifier = newVerifier();
        const b = perToken(tokens.length, (i) => bare[i]!(), expect, 'bare crypto.verify');
        const l = perToken(tokens.length, (i) => lean(`Bearer ${tokens[i]!}`) !== undefined, expect, 'lean');
        const p = perToken(tokens.length, (i) => !(verifier.check(tokens[i]!, []) instanceof ProxyError), expect, 'Portcullis');
        if (round === 0) continue;
        times.bare.push(b);
        times.lean.push(l);
        times.portcullis.push(p);
      }
      const beyond = (path: number[]): number => median(path.map((t, i) => t - times.bare[i]!));
      lines.push([
        alg,
        kind,
        fmt(median(times.bare)),
        fmt(median(times.lean)),
        fmt(median(times.portcullis)),
        fmt(beyond(times.lean)),
        fmt(beyond(times.portcullis)),
        median(times.portcullis.map((p, i) => times.lean[i]! / p)).toFixed(2),
      ]);
    }
  }
  registry.close();
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  for (const [n, l] of lines.entries()) {
    console.log(l.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
    if (n === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
  console.log('\nlean ÷ Portcullis reads like a throughput ratio of the checks alone (per round, then the median); the load');
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

/** µs per call of `check` over `count` tokens; every answer must be `expect` (a bench that checks nothing measures nothing). */
function perToken(count: number, check: (i: number) => boolean, expect: boolean, name: string): number {
  const started = process.hrtime.bigint();
  let wrong = 0;
  for (let i = 0; i < count; i++) if (check(i) !== expect) wrong++;
  const ns = Number(process.hrtime.bigint() - started);
  if (wrong > 0) throw new Error(`${name}: ${wrong} of ${count} tokens were ${expect ? 'refused' : 'accepted'}`);
  return ns / 1000 / count;
}

function fmt(us: number): string {
  return us.toFixed(2);
}
