/**
 * `portcullis audit verify`: walks every chain of a store in constant memory (one page of records and one
 * checkpoint at a time) and reports each problem as a finding with a stable code, the chain and the exact seq.
 *
 * Codes (severity error unless noted):
 *   RECORD_HASH_MISMATCH      the record at seq does not hash to its stored hash (edited; or its ts column lies)
 *   PREV_LINK_MISMATCH        the record at seq does not link to the stored hash of seq-1 (an edited-and-rehashed predecessor, reordering)
 *   SEQ_GAP                   records from seq are missing (detail gives the range); also a prefix deleted without a prune statement
 *   SEQ_DUPLICATE             a second record with the same seq (only possible once the unique key was dropped)
 *   CHECKPOINT_SIG_INVALID    a checkpoint whose signature does not verify under the trusted key its kid names
 *   CHECKPOINT_HEAD_MISMATCH  a validly signed checkpoint whose head hash differs from the record at its seq (a rehashed suffix)
 *   UNKNOWN_KEY               a checkpoint signed by a kid the trusted-keys file does not hold (e.g. a store forged under another key)
 *   ANCHOR_MISMATCH           an external anchor, or another chain's witness, names a record that is missing or differs (a restored old copy, a deleted tail)
 *   CHAIN_MISSING             a chain another chain's start record witnessed is entirely absent (a deleted chain)
 *   UNANCHORED_TAIL           records after the last valid checkpoint (warning for a live or crashed writer; error after a terminal checkpoint)
 *   CHAIN_UNTERMINATED        the chain has no valid terminal checkpoint: its writer crashed, or its tail was truncated
 *   REQUEST_COUNT_MISMATCH    a checkpoint's requests_seen / records_lost disagree with the records of its segment
 *   LOSS_RECORDED             the writer recorded lost records here (fail-open); detail gives the count
 *   PRUNE_ANCHOR_INVALID      the chain starts after seq 1 but its prune statement is unsigned, untrusted or does not link
 *
 * Exit status (`report.exitCode`): 0 no errors, 1 tampered or lost, 2 could not verify (store unreachable,
 * trusted keys missing or unreadable).
 */
import { canonicalize } from './canonical.ts';
import { GENESIS_HASH, computeEntryHash, timestampOf } from './chain.ts';
import { checkCheckpoint, checkPrune, readAnchors } from './checkpoint.ts';
import type { Checkpoint, PruneStatement } from './checkpoint.ts';
import { AuditError, isAuditError } from './errors.ts';
import type { TrustedKeys } from './keys.ts';
import { AUDIT_ACTIONS } from './record.ts';
import type { AuditStore, StoredEntry } from './store.ts';

export const FINDING_CODES = [
  'RECORD_HASH_MISMATCH',
  'PREV_LINK_MISMATCH',
  'SEQ_GAP',
  'SEQ_DUPLICATE',
  'CHECKPOINT_SIG_INVALID',
  'CHECKPOINT_HEAD_MISMATCH',
  'UNKNOWN_KEY',
  'ANCHOR_MISMATCH',
  'CHAIN_MISSING',
  'UNANCHORED_TAIL',
  'CHAIN_UNTERMINATED',
  'REQUEST_COUNT_MISMATCH',
  'LOSS_RECORDED',
  'PRUNE_ANCHOR_INVALID',
] as const;

export type FindingCode = (typeof FINDING_CODES)[number];

export interface Finding {
  readonly code: FindingCode;
  readonly severity: 'error' | 'warning';
  readonly chainId: string;
  readonly seq: number;
  readonly detail: string;
}

export interface VerifyOptions {
  readonly store: AuditStore;
  /** From the auditors' file (`loadTrustedKeys`), never from the store. */
  readonly trustedKeys: TrustedKeys;
  /**
   * Verify only around this window: each chain is walked from its last trusted checkpoint at or before `from`
   * (its signed head is the starting point) to its first checkpoint at or after `to`.
   */
  readonly from?: Date;
  readonly to?: Date;
  /** Only this chain (witness and anchor checks are limited to it too). */
  readonly chainId?: string;
  /** JSONL anchor files (checkpoints exported by the writer's `anchorFile` or by `exportAnchors`). */
  readonly anchors?: string | readonly string[];
  /**
   * Chains may still be live (verifying a store in use): CHAIN_UNTERMINATED becomes a warning. UNANCHORED_TAIL
   * before a terminal checkpoint is a warning either way.
   */
  readonly allowOpenChains?: boolean;
}

/** Counters filled while verifying. */
export interface VerifyStats {
  chains: number;
  records: number;
  checkpoints: number;
  anchors: number;
}

export interface VerifyReport {
  readonly status: 'valid' | 'invalid' | 'unverifiable';
  readonly exitCode: 0 | 1 | 2;
  readonly stats: VerifyStats;
  /** Findings per code (all of them, even beyond `maxFindings`). */
  readonly counts: Partial<Record<FindingCode, number>>;
  readonly errors: number;
  readonly warnings: number;
  /** The first `maxFindings` findings. */
  readonly findings: readonly Finding[];
  readonly truncated: boolean;
  /** Why verification could not run or finish (exit 2). */
  readonly failure?: { readonly code: string; readonly message: string };
}

/**
 * Streams findings, chain by chain, then anchors. Memory stays constant in the number of records.
 *
 * @throws AuditError `ERR_AUDIT_STORE_UNAVAILABLE` (and other store errors) — nothing more can be said.
 */
export async function* verifyAuditFindings(options: VerifyOptions, stats: VerifyStats = newStats()): AsyncGenerator<Finding> {
  if (options.trustedKeys.kids.length === 0) throw new AuditError('ERR_AUDIT_KEYS_FILE_INVALID', 'no trusted keys: nothing can be verified');
  const chainIds: AsyncIterable<string> = options.chainId !== undefined ? single(options.chainId) : options.store.chainIds();
  for await (const chainId of chainIds) {
    stats.chains++;
    yield* walkChain(options, chainId, stats);
  }
  const anchors = options.anchors === undefined ? [] : typeof options.anchors === 'string' ? [options.anchors] : options.anchors;
  for (const file of anchors) yield* checkAnchors(options, file, stats);
}

/**
 * Verifies and summarises. Never throws: a failure to verify becomes `exitCode: 2`.
 *
 * @example
 * const report = await verifyAudit({ store, trustedKeys: await loadTrustedKeys('audit-keys.json'), anchors: 'anchors.jsonl' });
 * process.exitCode = report.exitCode;
 */
export async function verifyAudit(
  options: VerifyOptions & { readonly maxFindings?: number; readonly onFinding?: (finding: Finding) => void },
): Promise<VerifyReport> {
  const stats = newStats();
  const counts: Partial<Record<FindingCode, number>> = {};
  const findings: Finding[] = [];
  const max = options.maxFindings ?? 1000;
  let errors = 0;
  let warnings = 0;
  let truncated = false;
  let failure: VerifyReport['failure'];
  try {
    for await (const finding of verifyAuditFindings(options, stats)) {
      counts[finding.code] = (counts[finding.code] ?? 0) + 1;
      if (finding.severity === 'error') errors++;
      else warnings++;
      if (findings.length < max) findings.push(finding);
      else truncated = true;
      options.onFinding?.(finding);
    }
  } catch (error) {
    failure = isAuditError(error) ? { code: error.code, message: error.message } : { code: 'ERR_AUDIT_STORE_UNAVAILABLE', message: String(error) };
  }
  const exitCode = failure !== undefined ? 2 : errors > 0 ? 1 : 0;
  return {
    status: exitCode === 0 ? 'valid' : exitCode === 1 ? 'invalid' : 'unverifiable',
    exitCode,
    stats,
    counts,
    errors,
    warnings,
    findings,
    truncated,
    ...(failure === undefined ? {} : { failure }),
  };
}

function newStats(): VerifyStats {
  return { chains: 0, records: 0, checkpoints: 0, anchors: 0 };
}

async function* single(value: string): AsyncGenerator<string> {
  yield value;
}

const finding = (code: FindingCode, chainId: string, seq: number, detail: string, severity: 'error' | 'warning' = 'error'): Finding => ({
  code,
  severity,
  chainId,
  seq,
  detail,
});

/** Parses and re-canonicalises stored JSON; undefined when it is not canonicalisable JSON. */
function parseRecord(text: string): { record: Record<string, unknown>; canonical: string } | undefined {
  try {
    const record = JSON.parse(text) as unknown;
    if (record === null || typeof record !== 'object' || Array.isArray(record)) return undefined;
    return { record: record as Record<string, unknown>, canonical: canonicalize(record) };
  } catch {
    return undefined;
  }
}

/**
 * Verifies records 1..throughSeq of one chain (prune checks a segment before deleting it). Only findings
 * about that prefix are produced: no tail or termination findings, no witness checks of other chains.
 */
export function verifyChainPrefix(options: {
  readonly store: AuditStore;
  readonly trustedKeys: TrustedKeys;
  readonly chainId: string;
  readonly throughSeq: number;
}): AsyncGenerator<Finding> {
  return walkChain({ store: options.store, trustedKeys: options.trustedKeys, chainId: options.chainId }, options.chainId, newStats(), options.throughSeq);
}

async function* walkChain(options: VerifyOptions, chainId: string, stats: VerifyStats, throughSeq?: number): AsyncGenerator<Finding> {
  const { store, trustedKeys } = options;
  const ranged = options.from !== undefined || options.to !== undefined;

  let fromSeq = 1;
  let toSeq: number | undefined = throughSeq;
  const prunes = await store.prunes(chainId);
  if (ranged) {
    const window = await findWindow(options, chainId);
    if (window === undefined) return;
    fromSeq = window.fromSeq;
    toSeq = window.toSeq;
    // A window starting inside a pruned prefix starts at the prune boundary instead, through the prune checks.
    if (prunes.some((p) => p.throughSeq >= fromSeq)) fromSeq = 1;
  }

  // Walk state. "Stored hash" links: the next record must link to what is stored for the previous seq, so one
  // edited record yields one finding rather than a cascade.
  let expectedSeq = fromSeq;
  let prevHash = GENESIS_HASH;
  let linkKnown = fromSeq === 1;
  let lastSeq = fromSeq - 1;
  let trustedSeq = fromSeq - 1;
  let terminalSeq: number | undefined;
  let terminalValid = false;
  let pruneBoundary: PruneStatement | undefined;
  let sawEntry = false;
  // Request accounting per checkpoint segment.
  let base: { requests: number; lost: number } | undefined = fromSeq === 1 ? { requests: 0, lost: 0 } : undefined;
  let segRequests = 0;
  let segLost = 0;
  let segDamaged = false;

  const checkpointsBefore = stats.checkpoints;

  const cpIterator = store.checkpoints(chainId, { fromSeq, ...(toSeq === undefined ? {} : { toSeq }) })[Symbol.asyncIterator]();
  let cp: Checkpoint | undefined;
  const nextCheckpoint = async (): Promise<void> => {
    const r = await cpIterator.next();
    cp = r.done ? undefined : r.value;
  };
  await nextCheckpoint();

  /** Verifies a checkpoint's signature; true when it can be trusted. */
  function* signatureFindings(c: Checkpoint): Generator<Finding, boolean> {
    stats.checkpoints++;
    const check = checkCheckpoint(c, trustedKeys);
    if (check === 'unknown-key') {
      yield finding('UNKNOWN_KEY', chainId, c.seq, `checkpoint signed by kid ${JSON.stringify(c.kid)}, which is not a trusted key`);
      return false;
    }
    if (check === 'invalid') {
      yield finding('CHECKPOINT_SIG_INVALID', chainId, c.seq, `checkpoint signature does not verify under trusted key ${JSON.stringify(c.kid)}`);
      return false;
    }
    return true;
  }

  function startSegment(c: Checkpoint): void {
    base = { requests: c.requestsSeen, lost: c.recordsLost };
    segRequests = 0;
    segLost = 0;
    segDamaged = false;
    if (c.final) {
      terminalSeq = c.seq;
      terminalValid = true;
    }
  }

  /**
   * A checkpoint whose record is not in the walk (the pruned boundary, or inside a reported gap). `nextSeq` is
   * the seq of the record that follows, when there is one.
   */
  function* orphanCheckpoint(c: Checkpoint, nextSeq: number | undefined): Generator<Finding> {
    const trusted = yield* signatureFindings(c);
    if (!trusted) return;
    const boundary = pruneBoundary !== undefined && c.seq === pruneBoundary.throughSeq;
    if (boundary) {
      if (c.headHash !== pruneBoundary!.lastHash) {
        yield finding('PRUNE_ANCHOR_INVALID', chainId, c.seq, 'the prune statement names a hash other than the boundary checkpoint head');
        return;
      }
      trustedSeq = Math.max(trustedSeq, c.seq);
    }
    // Signed, so its counters are authentic even though its record is gone: a fresh accounting base. The
    // segment after it is complete only when the next record follows it directly.
    startSegment(c);
    if (!boundary && nextSeq !== c.seq + 1) segDamaged = true;
  }

  function* checkpointAt(c: Checkpoint, entry: StoredEntry, entryValid: boolean): Generator<Finding> {
    const trusted = yield* signatureFindings(c);
    if (!trusted) return;
    if (c.headHash !== entry.hash) {
      yield finding('CHECKPOINT_HEAD_MISMATCH', chainId, c.seq, `signed head ${c.headHash} but the record at this seq has hash ${entry.hash}`);
      startSegment(c);
      return;
    }
    if (base !== undefined && !segDamaged && entryValid) {
      const requests = c.requestsSeen - base.requests;
      const lost = c.recordsLost - base.lost;
      if (lost !== segLost || requests !== segRequests + segLost) {
        yield finding(
          'REQUEST_COUNT_MISMATCH',
          chainId,
          c.seq,
          `checkpoint counts ${requests} requests (${lost} lost) since the previous checkpoint; the records show ${segRequests + segLost} (${segLost} lost)`,
        );
      }
    }
    // A signed head that matches the stored record anchors everything up to it; damage before it is reported.
    if (entryValid) trustedSeq = c.seq;
    startSegment(c);
  }

  /** The first stored record starts after seq 1: a prune must account for the missing prefix. */
  function* prefix(first: number, firstPrev: string | undefined): Generator<Finding> {
    const boundary = first - 1;
    const statement = prunes.find((p) => p.throughSeq === boundary);
    // Until a checkpoint is seen, the counts of the first remaining segment have no base; and unless the prune
    // statement holds, the first remaining record has nothing trustworthy to link to.
    base = undefined;
    linkKnown = false;
    if (statement === undefined) {
      if (prunes.length > 0) {
        const latest = prunes[prunes.length - 1]!;
        yield finding('PRUNE_ANCHOR_INVALID', chainId, latest.throughSeq, `records 1..${boundary} are gone but the latest prune statement ends at ${latest.throughSeq}`);
      } else {
        yield finding('SEQ_GAP', chainId, 1, `records 1..${boundary} are missing and no prune statement accounts for them`);
      }
      return;
    }
    const check = checkPrune(statement, trustedKeys);
    if (check !== 'valid') {
      yield finding('PRUNE_ANCHOR_INVALID', chainId, boundary, check === 'unknown-key' ? `prune statement signed by untrusted kid ${JSON.stringify(statement.kid)}` : 'prune statement signature does not verify');
      return;
    }
    if (firstPrev !== undefined && firstPrev !== statement.lastHash) {
      yield finding('PRUNE_ANCHOR_INVALID', chainId, boundary, `the first remaining record (seq ${first}) does not link to the prune statement's last hash`);
      return;
    }
    pruneBoundary = statement;
    prevHash = statement.lastHash;
    linkKnown = true;
  }

  for await (const entry of store.entries(chainId, { fromSeq, ...(toSeq === undefined ? {} : { toSeq }) })) {
    stats.records++;
    if (!sawEntry) {
      sawEntry = true;
      if (fromSeq === 1 && entry.seq > 1) {
        yield* prefix(entry.seq, entry.prevHash);
        expectedSeq = entry.seq;
        lastSeq = entry.seq - 1;
      }
    }
    if (entry.seq === lastSeq && lastSeq >= fromSeq) {
      yield finding('SEQ_DUPLICATE', chainId, entry.seq, 'a second record with this seq');
      segDamaged = true;
      continue;
    }
    if (entry.seq > expectedSeq) {
      yield finding('SEQ_GAP', chainId, expectedSeq, `records ${expectedSeq}..${entry.seq - 1} are missing`);
      segDamaged = true;
      linkKnown = false;
    }
    while (cp !== undefined && cp.seq < entry.seq) {
      yield* orphanCheckpoint(cp, entry.seq);
      await nextCheckpoint();
    }

    const parsed = parseRecord(entry.record);
    let valid = parsed !== undefined && computeEntryHash(chainId, entry.seq, entry.prevHash, parsed.canonical) === entry.hash;
    if (!valid) {
      yield finding('RECORD_HASH_MISMATCH', chainId, entry.seq, 'the record does not hash to its stored hash');
    } else if (entry.ts !== timestampOf(parsed!.record)) {
      valid = false;
      yield finding('RECORD_HASH_MISMATCH', chainId, entry.seq, `the ts index column (${entry.ts}) disagrees with the hashed @timestamp`);
    }
    if (!valid) segDamaged = true;
    if (linkKnown && entry.prevHash !== prevHash) {
      yield finding('PREV_LINK_MISMATCH', chainId, entry.seq, `prev_hash ${entry.prevHash} but the stored hash of seq ${entry.seq - 1} is ${prevHash}`);
      segDamaged = true;
    }
    prevHash = entry.hash;
    linkKnown = true;
    lastSeq = entry.seq;
    expectedSeq = entry.seq + 1;

    if (valid) {
      const record = parsed!.record;
      const action = record['event.action'];
      if (action === AUDIT_ACTIONS.request) segRequests++;
      else if (action === AUDIT_ACTIONS.loss) {
        const count = typeof record['audit.lost_count'] === 'number' ? record['audit.lost_count'] : 0;
        segLost += count;
        yield finding('LOSS_RECORDED', chainId, entry.seq, `the writer recorded ${count} lost record(s) (${String(record['event.reason'] ?? 'unknown reason')})`);
      } else if (action === AUDIT_ACTIONS.chainStart && entry.seq === 1 && options.chainId === undefined) {
        yield* witness(store, chainId, record);
      }
    }

    while (cp !== undefined && cp.seq === entry.seq) {
      yield* checkpointAt(cp, entry, valid);
      await nextCheckpoint();
    }
  }

  if (!sawEntry && fromSeq === 1 && prunes.length > 0) {
    // Everything was pruned: the prune statement and its boundary checkpoint are all that is left.
    const latest = prunes[prunes.length - 1]!;
    const check = checkPrune(latest, trustedKeys);
    if (check !== 'valid') yield finding('PRUNE_ANCHOR_INVALID', chainId, latest.throughSeq, `prune statement ${check === 'unknown-key' ? 'signed by an untrusted kid' : 'signature does not verify'}`);
    else pruneBoundary = latest;
    expectedSeq = latest.throughSeq + 1;
    lastSeq = latest.throughSeq;
  }

  if (cp !== undefined) {
    // Checkpoints beyond the last record (or inside a fully pruned chain's boundary).
    let reported = false;
    while (cp !== undefined) {
      if (cp.seq >= expectedSeq && !reported) {
        yield finding('SEQ_GAP', chainId, expectedSeq, `a checkpoint at seq ${cp.seq} proves records from ${expectedSeq} existed`);
        reported = true;
      }
      yield* orphanCheckpoint(cp, undefined);
      await nextCheckpoint();
    }
  } else if (!sawEntry && lastSeq === 0 && stats.checkpoints === checkpointsBefore) {
    // Listed (so registered) yet holding nothing: the registration is committed with the chain-start record,
    // so its records were deleted.
    yield finding('SEQ_GAP', chainId, 1, 'the chain is registered but holds no records or checkpoints');
  }

  if (toSeq !== undefined) return;
  if (lastSeq > trustedSeq) {
    const afterEnd = terminalValid && terminalSeq !== undefined && terminalSeq <= trustedSeq;
    yield finding(
      'UNANCHORED_TAIL',
      chainId,
      trustedSeq + 1,
      afterEnd
        ? `records ${trustedSeq + 1}..${lastSeq} follow the terminal checkpoint: nothing a writer wrote`
        : `records ${trustedSeq + 1}..${lastSeq} are not covered by a signed checkpoint yet`,
      afterEnd ? 'error' : 'warning',
    );
  }
  if (!terminalValid && (sawEntry || lastSeq > 0)) {
    yield finding(
      'CHAIN_UNTERMINATED',
      chainId,
      lastSeq,
      'no terminal checkpoint: the writer crashed or was killed, or the tail was truncated',
      options.allowOpenChains ? 'warning' : 'error',
    );
  }
}

/** A chain-start record names the newest chain in the store when it started, and that chain's head then. */
async function* witness(store: AuditStore, chainId: string, record: Record<string, unknown>): AsyncGenerator<Finding> {
  const prevId = record['audit.prev_chain_id'];
  const prevSeq = record['audit.prev_chain_seq'];
  const prevHash = record['audit.prev_chain_hash'];
  if (typeof prevId !== 'string' || typeof prevSeq !== 'number' || typeof prevHash !== 'string') return;
  if (!(await store.hasChain(prevId))) {
    yield finding('CHAIN_MISSING', prevId, prevSeq, `chain ${chainId} witnessed this chain at seq ${prevSeq} when it started; it is gone`);
    return;
  }
  if (prevSeq === 0) return;
  const entry = await store.entryAt(prevId, prevSeq);
  if (entry !== undefined) {
    if (entry.hash !== prevHash) {
      yield finding('ANCHOR_MISMATCH', prevId, prevSeq, `chain ${chainId} witnessed hash ${prevHash} here; the store has ${entry.hash}`);
    }
    return;
  }
  if (await coveredByPrune(store, prevId, prevSeq)) return;
  yield finding('ANCHOR_MISMATCH', prevId, prevSeq, `chain ${chainId} witnessed this record when it started; it is missing`);
}

async function coveredByPrune(store: AuditStore, chainId: string, seq: number): Promise<boolean> {
  const prunes = await store.prunes(chainId);
  return prunes.some((p) => p.throughSeq >= seq);
}

async function* checkAnchors(options: VerifyOptions, file: string, stats: VerifyStats): AsyncGenerator<Finding> {
  const { store, trustedKeys } = options;
  const lines = readAnchors(file);
  const fromMs = options.from?.getTime();
  const toMs = options.to?.getTime();
  try {
    for await (const line of lines) {
      if ('error' in line) {
        yield finding('ANCHOR_MISMATCH', '', 0, `${file}:${line.line}: ${line.error}`);
        continue;
      }
      const cp = line.checkpoint;
      if (options.chainId !== undefined && cp.chainId !== options.chainId) continue;
      const t = Date.parse(cp.time);
      if ((fromMs !== undefined && t < fromMs) || (toMs !== undefined && t > toMs)) continue;
      stats.anchors++;
      const check = checkCheckpoint(cp, trustedKeys);
      if (check !== 'valid') {
        yield finding('ANCHOR_MISMATCH', cp.chainId, cp.seq, `${file}:${line.line}: the anchor itself is ${check === 'unknown-key' ? 'signed by an untrusted kid' : 'not validly signed'}`);
        continue;
      }
      const entry = await store.entryAt(cp.chainId, cp.seq);
      if (entry !== undefined) {
        if (entry.hash !== cp.headHash) {
          yield finding('ANCHOR_MISMATCH', cp.chainId, cp.seq, `${file}:${line.line}: anchored head ${cp.headHash}, the store has ${entry.hash}`);
        }
      } else if (!(await coveredByPrune(store, cp.chainId, cp.seq))) {
        yield finding('ANCHOR_MISMATCH', cp.chainId, cp.seq, `${file}:${line.line}: the anchored record is missing from the store`);
      }
    }
  } catch (error) {
    if (isAuditError(error)) throw error;
    throw new AuditError('ERR_AUDIT_ANCHORS_INVALID', `cannot read anchors ${file}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * The part of a chain a time window needs: from its last trusted checkpoint at or before `from` (whose signed
 * head vouches for everything before it) to its first checkpoint at or after `to`. Undefined: skip the chain
 * (it ended before the window, or started after it).
 */
async function findWindow(options: VerifyOptions, chainId: string): Promise<{ fromSeq: number; toSeq: number | undefined } | undefined> {
  const fromMs = options.from?.getTime();
  const toMs = options.to?.getTime();
  let start: Checkpoint | undefined;
  let end: Checkpoint | undefined;
  for await (const c of options.store.checkpoints(chainId)) {
    const t = Date.parse(c.time);
    if (fromMs !== undefined && t <= fromMs && checkCheckpoint(c, options.trustedKeys) === 'valid') start = c;
    if (toMs !== undefined && t >= toMs) {
      end = c;
      break;
    }
  }
  if (start?.final) return undefined;
  if (toMs !== undefined) {
    const first = await options.store.entryAt(chainId, start?.seq ?? 1);
    if (first !== undefined && first.ts > toMs && start === undefined) return undefined;
  }
  return { fromSeq: start?.seq ?? 1, toSeq: end?.seq };
}
