/**
 * The floor under every JWT proxy: one signature check with `crypto.verify` and a `KeyObject` imported
 * once, in a loop, per algorithm; for a valid signature and for a forged one (random bytes shaped so that
 * the refusal pays the whole public-key operation, as in the load bench's `invalid`).
 * A proxy that verifies every request cannot refuse faster than this plus its HTTP work.
 *
 * ES256 twice: with the bare key and the signature re-encoded as DER (what Portcullis does), and with
 * node's documented `{ key, dsaEncoding: 'ieee-p1363' }`, which on Node 24 costs two caught TypeErrors
 * per call (see src/auth/signature.ts). The gap between the two rows is that cost on this machine.
 * PS256 twice for the same reason: with the `rsa-pss` key Portcullis derives (src/auth/rsa-pss-key.ts), and
 * with `{ key, padding, saltLength }`.
 *
 *   node bench/crypto-verify.ts            (about 3 s)
 */
import { constants, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { deriveRsaPssKey } from '../src/auth/rsa-pss-key.ts';
import { p1363ToDer } from '../src/auth/signature.ts';

const ROUNDS = 5;
const PER_ROUND_MS = 200;

/** The signing input of a bench token is ~550 bytes (header and payload in base64url). */
const input = Buffer.from('e'.repeat(550));

interface Case {
  readonly alg: string;
  readonly digest: string | null;
  readonly key: KeyObject;
  readonly good: Buffer;
  readonly forged: Buffer;
  readonly options?: { dsaEncoding: 'ieee-p1363' } | { padding: number; saltLength: number };
}

function cases(): Case[] {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ed = generateKeyPairSync('ed25519');
  const forgedRsa = randomBytes(256);
  forgedRsa[0]! &= 0x7f;
  // Ed25519 refuses S ≥ L (RFC 8032 §5.1.7) before any point arithmetic; a forger keeps S below it.
  const forgedEd = randomBytes(64);
  forgedEd[63]! &= 0x0f;
  const ecOptions = { dsaEncoding: 'ieee-p1363' } as const;
  const pssOptions = { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST };
  const pssGood = sign('sha256', input, { key: rsa.privateKey, ...pssOptions });
  return [
    { alg: 'RS256', digest: 'sha256', key: rsa.publicKey, good: sign('sha256', input, rsa.privateKey), forged: forgedRsa },
    { alg: 'PS256', digest: 'sha256', key: deriveRsaPssKey(rsa.publicKey, 'sha256'), good: pssGood, forged: forgedRsa },
    { alg: 'PS256 {padding}', digest: 'sha256', key: rsa.publicKey, good: pssGood, forged: forgedRsa, options: pssOptions },
    {
      alg: 'ES256',
      digest: 'sha256',
      key: ec.publicKey,
      good: sign('sha256', input, ec.privateKey),
      forged: p1363ToDer(randomBytes(64), 32)!,
    },
    {
      alg: 'ES256 {dsaEncoding}',
      digest: 'sha256',
      key: ec.publicKey,
      good: sign('sha256', input, { key: ec.privateKey, ...ecOptions }),
      forged: randomBytes(64),
      options: ecOptions,
    },
    { alg: 'EdDSA', digest: null, key: ed.publicKey, good: sign(null, input, ed.privateKey), forged: forgedEd },
  ];
}

/** Median over ROUNDS of the microseconds per verification, each round as many as fit in PER_ROUND_MS. */
function measure(c: Case, signature: Buffer, expected: boolean): number {
  const key = c.options === undefined ? c.key : { key: c.key, ...c.options };
  const perRound: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    let n = 0;
    const started = process.hrtime.bigint();
    const deadline = started + BigInt(PER_ROUND_MS * 1e6);
    let now = started;
    while (now < deadline) {
      for (let i = 0; i < 50; i++) {
        if (verify(c.digest, input, key, signature) !== expected) throw new Error(`${c.alg}: unexpected verdict`);
      }
      n += 50;
      now = process.hrtime.bigint();
    }
    perRound.push(Number(now - started) / 1000 / n);
  }
  perRound.sort((a, b) => a - b);
  return perRound[Math.floor(ROUNDS / 2)]!;
}

console.log(`crypto.verify, KeyObject imported once, ${input.length}-byte input; median of ${ROUNDS} rounds × ${PER_ROUND_MS} ms, one core`);
console.log('');
console.log('alg                   valid µs   forged µs   verifications/s (valid)');
for (const c of cases()) {
  const good = measure(c, c.good, true);
  const forged = measure(c, c.forged, false);
  console.log(`${c.alg.padEnd(20)} ${good.toFixed(1).padStart(9)} ${forged.toFixed(1).padStart(11)}   ${Math.round(1e6 / good).toLocaleString('en').padStart(10)}`);
}
