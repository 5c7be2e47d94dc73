/**
 * How long label enforcement adds to a Loki request: runs `enforceLogql` over the test corpus many times
 * and prints the median and p99 per query in microseconds (parse, rewrite, serialise and the self-check
 * re-parse included).
 *
 *   node bench/logql-rewrite.ts [rounds]       (Node 24; in this repo `npx node bench/logql-rewrite.ts`)
 */
import { readFileSync } from 'node:fs';
import { enforceLogql } from '../src/logql/index.ts';

const corpus = readFileSync(new URL('../test/fixtures/logql-corpus.txt', import.meta.url), 'utf8')
  .split('\n')
  .filter((line) => line.trim() !== '' && !line.startsWith('#'));

const enforce = new Map([
  ['env', ['a.b', 'c|d']],
  ['team', ['x"y']],
]);
const rounds = Number(process.argv[2] ?? 200);

// Warm up so the JIT has compiled the hot paths before anything is measured.
for (let r = 0; r < 20; r++) for (const q of corpus) enforceLogql(q, enforce);

const samples = new Float64Array(rounds * corpus.length);
let n = 0;
const started = process.hrtime.bigint();
for (let r = 0; r < rounds; r++) {
  for (const q of corpus) {
    const t0 = process.hrtime.bigint();
    enforceLogql(q, enforce);
    samples[n++] = Number(process.hrtime.bigint() - t0) / 1000;
  }
}
const totalMs = Number(process.hrtime.bigint() - started) / 1e6;
samples.sort();
const at = (p: number): number => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))]!;
const avgChars = Math.round(corpus.reduce((sum, q) => sum + q.length, 0) / corpus.length);

console.log(`enforceLogql over ${corpus.length} corpus queries (avg ${avgChars} chars) x ${rounds} rounds`);
console.log(`median ${at(0.5).toFixed(1)} us/query, p99 ${at(0.99).toFixed(1)} us/query, max ${at(1).toFixed(1)} us`);
console.log(`${Math.round(n / (totalMs / 1000))} queries/s on one core (${totalMs.toFixed(0)} ms total)`);
