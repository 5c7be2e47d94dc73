/**
 * Signed statements about chains.
 *
 * A CHECKPOINT says "chain C had head hash H at seq S at time T; the writer had been handed R requests and
 * had lost L records by then; F = this is the chain's terminal checkpoint". The writer makes one every N records
 * or T seconds, after a loss record and at shutdown (the terminal one, after a chain-end record), so the verifier
 * can tell a clean end from a crash or a truncation (CHAIN_UNTERMINATED).
 *
 * A PRUNE statement says "records 1..S of chain C were deleted on purpose; the last one had hash H", so what
 * remains still verifies (the first remaining record's prev_hash must be H).
 *
 * Both are Ed25519 signatures over the RFC 8785 canonical JSON of the statement with a `type` member naming
 * the statement and its version (domain separation: a checkpoint signature can never pass as a prune one).
 *
 * ANCHORS are checkpoints exported outside the store (a JSONL file, a SIEM): one JSON object per line,
 * `{"type":"checkpoint","chain_id":...,"seq":...,"head_hash":...,"time":...,"requests_seen":...,
 * "records_lost":...,"final":...,"kid":...,"sig":...}`. The same line format appears in segment exports, so an
 * export file is also an anchor file.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { canonicalize } from './canonical.ts';
import { checkSignature } from './keys.ts';
import type { AuditSigner, SignatureCheck, TrustedKeys } from './keys.ts';

export const CHECKPOINT_TYPE = 'portcullis.audit.checkpoint.v1';
export const PRUNE_TYPE = 'portcullis.audit.prune.v1';

/** A signed checkpoint, as stored and as anchored. */
export interface Checkpoint {
  readonly chainId: string;
  readonly seq: number;
  readonly headHash: string;
  /** RFC 3339 with milliseconds, UTC. */
  readonly time: string;
  readonly requestsSeen: number;
  readonly recordsLost: number;
  readonly final: boolean;
  readonly kid: string;
  /** Ed25519, base64url. */
  readonly sig: string;
}

export type CheckpointBody = Omit<Checkpoint, 'kid' | 'sig'>;

/** A signed prune statement: records 1..throughSeq of chainId were removed on purpose. */
export interface PruneStatement {
  readonly chainId: string;
  readonly throughSeq: number;
  /** Hash of record `throughSeq` (the boundary checkpoint's head). */
  readonly lastHash: string;
  readonly time: string;
  readonly kid: string;
  readonly sig: string;
}

export type PruneBody = Omit<PruneStatement, 'kid' | 'sig'>;

/** The exact bytes a checkpoint signature covers. */
export function checkpointPayload(cp: Omit<Checkpoint, 'sig'>): Buffer {
  return Buffer.from(
    canonicalize({
      type: CHECKPOINT_TYPE,
      chain_id: cp.chainId,
      seq: cp.seq,
      head_hash: cp.headHash,
      time: cp.time,
      requests_seen: cp.requestsSeen,
      records_lost: cp.recordsLost,
      final: cp.final,
      kid: cp.kid,
    }),
    'utf8',
  );
}

/** Signs a checkpoint body with `signer` (its kid goes inside the signed bytes). */
export function signCheckpoint(body: CheckpointBody, signer: AuditSigner): Checkpoint {
  const unsigned = { ...body, kid: signer.kid };
  return { ...unsigned, sig: signer.sign(checkpointPayload(unsigned)) };
}

export function checkCheckpoint(cp: Checkpoint, trusted: TrustedKeys): SignatureCheck {
  return checkSignature(trusted, cp.kid, checkpointPayload(cp), cp.sig);
}

/** The exact bytes a prune signature covers. */
export function prunePayload(p: Omit<PruneStatement, 'sig'>): Buffer {
  return Buffer.from(
    canonicalize({ type: PRUNE_TYPE, chain_id: p.chainId, through_seq: p.throughSeq, last_hash: p.lastHash, time: p.time, kid: p.kid }),
    'utf8',
  );
}

export function signPrune(body: PruneBody, signer: AuditSigner): PruneStatement {
  const unsigned = { ...body, kid: signer.kid };
  return { ...unsigned, sig: signer.sign(prunePayload(unsigned)) };
}

export function checkPrune(p: PruneStatement, trusted: TrustedKeys): SignatureCheck {
  return checkSignature(trusted, p.kid, prunePayload(p), p.sig);
}

/** The anchor/export line object of a checkpoint (snake_case, `type: "checkpoint"`). */
export function checkpointToJson(cp: Checkpoint): Record<string, string | number | boolean> {
  return {
    type: 'checkpoint',
    chain_id: cp.chainId,
    seq: cp.seq,
    head_hash: cp.headHash,
    time: cp.time,
    requests_seen: cp.requestsSeen,
    records_lost: cp.recordsLost,
    final: cp.final,
    kid: cp.kid,
    sig: cp.sig,
  };
}

/** Parses an anchor/export line object back; undefined when it is not a well-formed checkpoint. */
export function checkpointFromJson(value: unknown): Checkpoint | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const o = value as Record<string, unknown>;
  if (
    o.type !== 'checkpoint' ||
    typeof o.chain_id !== 'string' ||
    !Number.isSafeInteger(o.seq) ||
    typeof o.head_hash !== 'string' ||
    typeof o.time !== 'string' ||
    !Number.isSafeInteger(o.requests_seen) ||
    !Number.isSafeInteger(o.records_lost) ||
    typeof o.final !== 'boolean' ||
    typeof o.kid !== 'string' ||
    typeof o.sig !== 'string'
  ) {
    return undefined;
  }
  return {
    chainId: o.chain_id,
    seq: o.seq as number,
    headHash: o.head_hash,
    time: o.time,
    requestsSeen: o.requests_seen as number,
    recordsLost: o.records_lost as number,
    final: o.final,
    kid: o.kid,
    sig: o.sig,
  };
}

/** The export line object of a prune statement. */
export function pruneToJson(p: PruneStatement): Record<string, string | number> {
  return { type: 'prune', chain_id: p.chainId, through_seq: p.throughSeq, last_hash: p.lastHash, time: p.time, kid: p.kid, sig: p.sig };
}

/** One line of an anchor file: a checkpoint, or why the line is not one. Lines of other types are skipped. */
export type AnchorLine = { readonly line: number; readonly checkpoint: Checkpoint } | { readonly line: number; readonly error: string };

/**
 * Streams the checkpoints of a JSONL anchor (or export) file, one line at a time (constant memory). Blank
 * lines and lines of another `type` (records, prune statements) are skipped; a malformed line is reported.
 */
export async function* readAnchors(path: string): AsyncGenerator<AnchorLine> {
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let n = 0;
  for await (const text of lines) {
    n++;
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      yield { line: n, error: 'not JSON' };
      continue;
    }
    const type = (value as { type?: unknown } | null)?.type;
    if (type !== 'checkpoint') continue;
    const checkpoint = checkpointFromJson(value);
    yield checkpoint === undefined ? { line: n, error: 'malformed checkpoint' } : { line: n, checkpoint };
  }
}

/** Appends checkpoints to an anchor file, one JSON line each, and fsyncs it (an anchor is evidence). */
export async function appendAnchors(path: string, checkpoints: readonly Checkpoint[]): Promise<void> {
  if (checkpoints.length === 0) return;
  const text = checkpoints.map((cp) => JSON.stringify(checkpointToJson(cp)) + '\n').join('');
  const handle = await open(path, 'a', 0o640);
  try {
    await handle.appendFile(text, 'utf8');
    await handle.datasync();
  } finally {
    await handle.close();
  }
}
