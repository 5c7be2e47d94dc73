/**
 * The audit writer: one per proxy instance, one chain per writer lifetime.
 *
 * Request path: the pipeline asks `admit()` before forwarding (false -> answer 503, forward nothing), then
 * hands the decision record to `write()`, which only enqueues (bounded). Everything else happens off the
 * request path in ONE writer loop: take a batch, chain it (seq, prev_hash, hash), add checkpoints where due,
 * and commit it to the store in one transaction — or, when the store fails, to the local spool (fsync per
 * batch). When the store is back the spool is replayed first, in order, exactly once, and only then do new
 * batches go to the store again, so the store never holds a gap that will be filled later.
 *
 * Modes when neither the store nor the spool can take a batch:
 * - fail-closed (default): the batch stays queued, `admit()` answers false until something can take records
 *   again, so nothing is forwarded unaudited. Records already admitted still get written when the store or
 *   spool recovers.
 * - fail-open: the batch is dropped and counted; when persistence works again the chain gets an explicit
 *   LOSS record (`event.action: audit-loss`, `audit.lost_count`) immediately followed by a signed checkpoint.
 *
 * A batch starts when a full batch is queued (`batchMax` records, or half of `queueMax` when that is fewer, so
 * that waiting never fills the queue and makes `admit()` refuse) or when the oldest record has waited
 * `batchWaitMs`, whichever comes first (sooner for a checkpoint, a LOSS record, a flush or close). Each batch
 * costs a hand-off to the write thread and back, a transaction and an fsync (SQLite) or a round trip
 * (PostgreSQL), whatever its size.
 * Without the wait a batch goes as soon as the previous one is written, and on a fast disk that is a few
 * records each (same token, SQLite, session 13's host: ~5 records per batch, an audited request 10-17 µs
 * dearer). Records wait in memory either way: the wait adds at most `batchWaitMs` to the time a record takes
 * to be durable, never to a request.
 *
 * Checkpoints are made every `checkpointEvery` records (at exact multiples of seq), every
 * `checkpointIntervalMs` when records are waiting for one, right after a LOSS record, and at `close()`, which
 * appends a chain-end record and the terminal checkpoint (`final: true`).
 *
 * A checkpoint's `requests_seen` counts the `write()` calls reflected in the chain up to its seq: request
 * records plus records declared lost by LOSS records. `records_lost` is the LOSS total so far. The verifier
 * re-counts both (REQUEST_COUNT_MISMATCH).
 */
import { hostname } from 'node:os';
import { canonicalize } from './canonical.ts';
import { createChainBuilder, timestampOf } from './chain.ts';
import type { ChainEntry, ChainHead } from './chain.ts';
import { appendAnchors, signCheckpoint } from './checkpoint.ts';
import type { Checkpoint } from './checkpoint.ts';
import type { JsonValue } from './canonical.ts';
import { AuditError } from './errors.ts';
import type { AuditSigner } from './keys.ts';
import { AUDIT_ACTIONS, PreparedRecord, uuidv7 } from './record.ts';
import type { AuditRecord, ChainRecord } from './record.ts';
import { scrubRecord } from './secrets.ts';
import { openSpool } from './spool.ts';
import type { ReplayProgress, Spool } from './spool.ts';
import type { AppendBatch, AuditStore, ChainRegistration } from './store.ts';

export type AuditMode = 'fail-closed' | 'fail-open';

/** Why records were lost. */
export type LossReason = 'queue-full' | 'unavailable' | 'invalid' | 'closed';

/**
 * Metrics and logging hooks. Every callback is optional and must not throw (a throw is swallowed so the writer
 * keeps running). No metrics library is imported here: the caller maps these onto prom-client.
 */
export interface AuditObserver {
  /** A batch became durable, in the store or in the spool. */
  batchPersisted?(info: { readonly target: 'store' | 'spool'; readonly records: number; readonly checkpoints: number; readonly lastSeq: number }): void;
  /** The store refused a batch or a replay; the writer switches to the spool and retries with backoff. */
  storeFailed?(error: unknown): void;
  /** The store took records again after failing (and any spool was replayed first). */
  storeRecovered?(): void;
  /** Spooled batches reached the store. */
  spoolReplayed?(progress: ReplayProgress): void;
  /** The spool could not take a batch (full or the disk failed). */
  spoolFailed?(error: unknown): void;
  /** Records that will not be stored (counted; fail-open gets a LOSS record for them). */
  recordsLost?(count: number, reason: LossReason): void;
  /** Secret-looking substrings replaced by `[redacted]` in records handed to `write()`. */
  secretsRedacted?(count: number): void;
  checkpointSigned?(checkpoint: Checkpoint): void;
  /** `admit()` starts (true) or stops (false) refusing. */
  blockedChanged?(blocked: boolean): void;
  /** The anchor file could not be appended to. */
  anchorFailed?(error: unknown): void;
  /** A bug: an unexpected error inside the writer loop. */
  internalError?(error: unknown): void;
}

export interface AuditWriterOptions {
  readonly store: AuditStore;
  readonly signer: AuditSigner;
  /** Records per checkpoint (default 1000). */
  readonly checkpointEvery?: number;
  /** Longest time records wait for a checkpoint, ms (default 10000). */
  readonly checkpointIntervalMs?: number;
  /** Records waiting in memory before `admit()` refuses (fail-closed) / records are dropped (default 10000). */
  readonly queueMax?: number;
  /** Records per store transaction (default 500). */
  readonly batchMax?: number;
  /** Longest a queued record waits for others to share its batch, ms (default 0: no wait). */
  readonly batchWaitMs?: number;
  /** Local spool for store outages. Without it a store failure blocks (fail-closed) or loses (fail-open) at once. */
  readonly spool?: { readonly dir: string; readonly maxBytes: number };
  /** Default fail-closed. */
  readonly mode?: AuditMode;
  /** First retry delay after a store failure, ms (default 500; doubles up to `retryMaxMs`). */
  readonly retryMs?: number;
  /** Default 30000. */
  readonly retryMaxMs?: number;
  /** Also append every checkpoint to this JSONL file (an external anchor for `verify --anchors`). */
  readonly anchorFile?: string;
  readonly observer?: AuditObserver;
  /** Recorded in the chain-start record. */
  readonly serviceVersion?: string;
  /** Clock, epoch ms (tests). */
  readonly now?: () => number;
  /** Monotonic clock, ms, for the batch wait (tests; default performance.now). */
  readonly monotonic?: () => number;
}

export interface AuditWriterStats {
  readonly chainId: string;
  /** Seq of the last persisted entry. */
  readonly seq: number;
  readonly queued: number;
  readonly spooledBytes: number;
  readonly storeAvailable: boolean;
  readonly blocked: boolean;
  readonly requestsSeen: number;
  readonly recordsLost: number;
}

export interface AuditWriterCloseResult {
  readonly chainId: string;
  readonly lastSeq: number;
  /** True when the chain-end record and terminal checkpoint are durable (store or spool). */
  readonly terminated: boolean;
  /** Records that could not be persisted before closing (fail-closed with everything down). */
  readonly unpersisted: number;
}

export interface AuditWriter {
  /** This writer's chain. */
  readonly chainId: string;
  /** `write()` calls so far (including records later lost). */
  readonly requestsSeen: number;
  /** Records dropped so far (fail-open, queue overflow, invalid, after close). */
  readonly recordsLost: number;
  /**
   * Ask BEFORE forwarding a request. False (fail-closed only) when neither the store nor the spool can take
   * more, when the queue is full, or once closing: the proxy answers 503 and forwards nothing.
   */
  admit(): boolean;
  /**
   * Enqueue one decision record (never blocks, never throws). A `PreparedRecord` (from `prepareAuditRecord`)
   * is chained as prepared; a plain record is scrubbed and canonicalised first.
   */
  write(record: AuditRecord | PreparedRecord): void;
  /** Processes everything queued now, retrying the store at once (ignores backoff). */
  flush(): Promise<void>;
  stats(): AuditWriterStats;
  /** Flushes, appends the chain-end record and terminal checkpoint, stops timers. Never throws. */
  close(): Promise<AuditWriterCloseResult>;
}

/**
 * Starts a writer: opens the spool (picking up files left by earlier processes), replays them when the store
 * is reachable, mints the chain id and queues the chain-start record, which names the newest chain already
 * in the store and its head (a witness: deleting that chain or its tail later is detected).
 *
 * @example
 * const writer = await createAuditWriter({ store, signer, spool: { dir: './data/spool', maxBytes: 256 << 20 } });
 * if (!writer.admit()) throw new ProxyError('ERR_AUDIT_UNAVAILABLE');
 * writer.write(prepareAuditRecord(input, { redactor }));
 * await writer.close();
 * @throws AuditError `ERR_AUDIT_OPTIONS_INVALID` for out-of-range options; spool directory errors.
 */
export async function createAuditWriter(options: AuditWriterOptions): Promise<AuditWriter> {
  const now = options.now ?? Date.now;
  const monotonic = options.monotonic ?? (() => performance.now());
  const checkpointEvery = positive('checkpointEvery', options.checkpointEvery ?? 1000);
  const intervalMs = positive('checkpointIntervalMs', options.checkpointIntervalMs ?? 10_000);
  const queueMax = positive('queueMax', options.queueMax ?? 10_000);
  const batchMax = positive('batchMax', options.batchMax ?? 500);
  const batchWaitMs = options.batchWaitMs ?? 0;
  if (!Number.isSafeInteger(batchWaitMs) || batchWaitMs < 0) throw new AuditError('ERR_AUDIT_OPTIONS_INVALID', 'batchWaitMs must be a non-negative integer');
  /** Queued records that make a batch due without waiting. */
  const fullBatch = Math.min(batchMax, Math.max(1, Math.floor(queueMax / 2)));
  const retryMs = positive('retryMs', options.retryMs ?? 500);
  const retryMaxMs = positive('retryMaxMs', options.retryMaxMs ?? 30_000);
  const mode: AuditMode = options.mode ?? 'fail-closed';
  const { store, signer } = options;
  const observer = options.observer ?? {};
  const notify = <K extends keyof AuditObserver>(name: K, ...args: Parameters<NonNullable<AuditObserver[K]>>): void => {
    try {
      (observer[name] as ((...a: unknown[]) => void) | undefined)?.(...args);
    } catch {
      // An observer bug must not stop auditing.
    }
  };

  const startedAt = now();
  const chainId = uuidv7(startedAt);
  const spool: Spool | undefined = options.spool === undefined ? undefined : await openSpool({ ...options.spool, chainId });

  let storeDown = false;
  let retryAt = 0;
  let backoff = retryMs;
  if (spool !== undefined && !spool.isEmpty) {
    try {
      await spool.replay(store, (p) => notify('spoolReplayed', p));
    } catch (error) {
      markStoreDown(error);
    }
  }

  // The witness: the newest chain in the store as we start. Failing to read it only weakens detection.
  const start: Record<string, JsonValue> = {
    '@timestamp': new Date(startedAt).toISOString(),
    'event.id': uuidv7(startedAt),
    'event.action': AUDIT_ACTIONS.chainStart,
    'host.name': hostname(),
    'process.pid': process.pid,
    'audit.checkpoint_kid': signer.kid,
  };
  if (options.serviceVersion !== undefined) start['service.version'] = options.serviceVersion;
  if (!storeDown) {
    try {
      const tip = await store.latestChain();
      if (tip !== undefined) {
        start['audit.prev_chain_id'] = tip.chainId;
        start['audit.prev_chain_seq'] = tip.seq;
        start['audit.prev_chain_hash'] = tip.hash;
      }
    } catch (error) {
      markStoreDown(error);
    }
  }
  if (start['audit.prev_chain_id'] === undefined && storeDown) start['audit.prev_chain_unknown'] = true;
  const registration: ChainRegistration = { chainId, startedAt: start['@timestamp'] as string };

  const chain = createChainBuilder(chainId);
  const queue: (AuditRecord | PreparedRecord)[] = [];
  let startPending = true;
  let lostPending = 0;
  let lossReason: LossReason = 'unavailable';
  let requestsSeen = 0;
  let recordsLost = 0;
  // Committed (durable) chain accounting, for checkpoint bodies.
  let requestsChained = 0;
  let lostRecorded = 0;
  let sinceCheckpoint = 0;
  let lastCheckpointAt = startedAt;
  let blocked = false;
  let closing = false;
  let closed = false;
  let terminated = false;
  let finalRequested = false;

  let retryTimer: NodeJS.Timeout | undefined;
  // The batch wait: set while queued records wait for company; `oldestAt` is when the oldest of them was
  // queued, or earlier. Monotonic time: a wall clock set back must not hold records for as long as it went back.
  let waitTimer: NodeJS.Timeout | undefined;
  let oldestAt = 0;
  const intervalTimer = setInterval(() => void kick(false), Math.min(intervalMs, 2 ** 31 - 1));
  intervalTimer.unref();

  function markStoreDown(error: unknown): void {
    storeDown = true;
    retryAt = now() + backoff;
    backoff = Math.min(backoff * 2, retryMaxMs);
    notify('storeFailed', error);
  }

  function markStoreUp(): void {
    backoff = retryMs;
    if (!storeDown) return;
    storeDown = false;
    notify('storeRecovered');
  }

  function setBlocked(value: boolean): void {
    if (blocked === value) return;
    blocked = value;
    notify('blockedChanged', value);
  }

  /** Milliseconds the queued records may still wait for a fuller batch; 0 when a batch is due now. */
  function waitLeft(force: boolean): number {
    if (batchWaitMs === 0 || force || closing || queue.length >= fullBatch || startPending || lostPending > 0 || storeDown || checkpointDue()) return 0;
    // Less than a millisecond left is none: a timer cannot wait less, and libuv may fire one a fraction early.
    const left = oldestAt + batchWaitMs - monotonic();
    return left >= 1 ? Math.ceil(left) : 0;
  }

  function scheduleWait(ms: number): void {
    if (waitTimer !== undefined || closed) return;
    waitTimer = setTimeout(() => {
      waitTimer = undefined;
      void kick(false);
    }, ms);
    waitTimer.unref();
  }

  function scheduleRetry(): void {
    if (retryTimer !== undefined || closed) return;
    retryTimer = setTimeout(
      () => {
        retryTimer = undefined;
        void kick(false);
      },
      Math.max(0, retryAt - now()),
    );
    retryTimer.unref();
  }

  // One loop: pumps run strictly one after another; kicks while one is queued coalesce into it.
  let tail: Promise<void> = Promise.resolve();
  let queued: { promise: Promise<void>; force: boolean } | undefined;
  function kick(force: boolean): Promise<void> {
    if (queued !== undefined) {
      queued.force ||= force;
      return queued.promise;
    }
    const entry: { promise: Promise<void>; force: boolean } = { promise: Promise.resolve(), force };
    entry.promise = tail.then(async () => {
      queued = undefined;
      try {
        await pump(entry.force);
      } catch (error) {
        notify('internalError', error);
      }
    });
    queued = entry;
    tail = entry.promise;
    return entry.promise;
  }

  const spoolPending = (): boolean => spool !== undefined && !spool.isEmpty;
  const checkpointDue = (): boolean => sinceCheckpoint > 0 && now() - lastCheckpointAt >= intervalMs;

  async function pump(force: boolean): Promise<void> {
    if (spoolPending() && (force || !storeDown || now() >= retryAt)) {
      try {
        await spool!.replay(store, (p) => notify('spoolReplayed', p));
        markStoreUp();
      } catch (error) {
        markStoreDown(error);
      }
    }
    for (;;) {
      const work = queue.length > 0 || startPending || lostPending > 0 || checkpointDue() || (finalRequested && !terminated);
      if (!work) break;
      const wait = queue.length > 0 ? waitLeft(force) : 0;
      if (wait > 0) {
        scheduleWait(wait);
        break;
      }
      const outcome = await persistNext(force);
      if (outcome === 'persisted') continue;
      if (outcome === 'dropped') continue; // fail-open dropped a batch of requests; go on with the rest
      scheduleRetry();
      break;
    }
    // Batches may be flowing into the spool without a failure outcome; make sure a replay is attempted even if
    // no further request arrives.
    if (storeDown && spoolPending()) scheduleRetry();
  }

  type Outcome = 'persisted' | 'dropped' | 'failed';

  async function persistNext(force: boolean): Promise<Outcome> {
    const cutAt = monotonic();
    const mark: ChainHead = chain.head;
    const drained = queue.length <= batchMax;
    let requests = requestsChained;
    let lost = lostRecorded;
    let since = sinceCheckpoint;
    let cpAt = lastCheckpointAt;
    const entries: ChainEntry[] = [];
    const checkpoints: Checkpoint[] = [];
    const chains: ChainRegistration[] = [];

    const checkpoint = (final: boolean): void => {
      const head = chain.head;
      const time = now();
      checkpoints.push(
        signCheckpoint(
          { chainId, seq: head.seq, headHash: head.hash, time: new Date(time).toISOString(), requestsSeen: requests + lost, recordsLost: lost, final },
          signer,
        ),
      );
      since = 0;
      cpAt = time;
    };
    const add = (record: ChainRecord): void => {
      entries.push(chain.append(record));
      since++;
      if (since >= checkpointEvery) checkpoint(false);
    };

    // Canonicalise the requests first: one that is not JSON data (a caller bypassed buildAuditRecord) cannot
    // be chained, so it joins this batch's LOSS record instead of poisoning the batch.
    const take = Math.min(queue.length, batchMax);
    const ready: { readonly canonical: string; readonly ts: number }[] = [];
    let invalid = 0;
    let secrets = 0;
    for (let i = 0; i < take; i++) {
      // Prepared records come scrubbed and in canonical form; anything else is checked here.
      const queued = queue[i]!;
      if (queued instanceof PreparedRecord) {
        ready.push(queued);
        continue;
      }
      const scrubbed = scrubRecord(queued as unknown as ChainRecord);
      secrets += scrubbed.count;
      try {
        ready.push({ canonical: canonicalize(scrubbed.record), ts: timestampOf(scrubbed.record) });
      } catch {
        invalid++;
      }
    }

    if (startPending) {
      chains.push(registration);
      add(start);
    }
    const lossCount = lostPending + invalid;
    if (lossCount > 0) {
      const time = now();
      add({
        '@timestamp': new Date(time).toISOString(),
        'event.id': uuidv7(time),
        'event.action': AUDIT_ACTIONS.loss,
        'event.reason': invalid > 0 && lostPending === 0 ? 'invalid' : lossReason,
        'audit.lost_count': lossCount,
      });
      lost += lossCount;
      // The loss record is signed at once: it is the one record an attacker would most like to remove.
      if (since > 0) checkpoint(false);
    }
    for (const r of ready) {
      entries.push(chain.appendCanonical(r.canonical, r.ts));
      requests++;
      since++;
      if (since >= checkpointEvery) checkpoint(false);
    }
    const ending = finalRequested && take === queue.length;
    if (ending) {
      const time = now();
      // Not through add(): a regular checkpoint at this seq would collide with the terminal one.
      entries.push(
        chain.append({
          '@timestamp': new Date(time).toISOString(),
          'event.id': uuidv7(time),
          'event.action': AUDIT_ACTIONS.chainEnd,
          'audit.requests_seen': requests + lost,
          'audit.records_lost': lost,
        }),
      );
      checkpoint(true);
    } else if (since > 0 && now() - cpAt >= intervalMs) {
      checkpoint(false);
    }

    const batch: AppendBatch = { chains, entries, checkpoints };
    let target: 'store' | 'spool' | undefined;
    if (!spoolPending() && (!storeDown || force || now() >= retryAt)) {
      try {
        await store.append(batch);
        markStoreUp();
        target = 'store';
      } catch (error) {
        markStoreDown(error);
      }
    }
    if (target === undefined && spool !== undefined && (await spool.append(batch, (error) => notify('spoolFailed', error)))) {
      target = 'spool';
    }

    if (target !== undefined) {
      queue.splice(0, take);
      // What is left arrived after the cut: its wait counts from the cut. Records that did not fit in the batch
      // keep the older mark, which is never later than their arrival.
      if (drained) oldestAt = cutAt;
      startPending = false;
      lostPending -= lossCount - invalid;
      requestsChained = requests;
      lostRecorded = lost;
      sinceCheckpoint = since;
      lastCheckpointAt = cpAt;
      if (ending) terminated = true;
      if (invalid > 0) {
        recordsLost += invalid;
        notify('recordsLost', invalid, 'invalid');
      }
      if (secrets > 0) notify('secretsRedacted', secrets);
      setBlocked(false);
      notify('batchPersisted', { target, records: entries.length, checkpoints: checkpoints.length, lastSeq: chain.head.seq });
      for (const cp of checkpoints) notify('checkpointSigned', cp);
      if (options.anchorFile !== undefined && checkpoints.length > 0) {
        await appendAnchors(options.anchorFile, checkpoints).catch((error: unknown) => notify('anchorFailed', error));
      }
      return 'persisted';
    }

    chain.reset(mark);
    if (mode === 'fail-closed') {
      setBlocked(true);
      return 'failed';
    }
    if (take === 0) return 'failed';
    queue.splice(0, take);
    loseRecords(take, 'unavailable');
    return 'dropped';
  }

  function loseRecords(count: number, reason: LossReason): void {
    recordsLost += count;
    lostPending += count;
    lossReason = reason;
    notify('recordsLost', count, reason);
  }

  const writer: AuditWriter = {
    chainId,
    get requestsSeen() {
      return requestsSeen;
    },
    get recordsLost() {
      return recordsLost;
    },
    admit() {
      if (closing) return false;
      if (mode === 'fail-open') return true;
      return !blocked && queue.length < queueMax;
    },
    write(record) {
      if (closed || finalRequested) {
        // The chain is ending: the record cannot be chained any more. Counted, reported, never silent.
        recordsLost += 1;
        notify('recordsLost', 1, 'closed');
        return;
      }
      requestsSeen++;
      if (queue.length >= queueMax) {
        loseRecords(1, 'queue-full');
      } else {
        if (queue.length === 0) oldestAt = monotonic();
        queue.push(record);
      }
      // While the batch wait runs, its timer starts the batch; a full batch or a LOSS record starts one at once.
      if (queued === undefined && (waitTimer === undefined || waitLeft(false) === 0)) void kick(false);
    },
    flush() {
      return kick(true);
    },
    stats() {
      return {
        chainId,
        seq: chain.head.seq,
        queued: queue.length,
        spooledBytes: spool?.bytes ?? 0,
        storeAvailable: !storeDown,
        blocked,
        requestsSeen,
        recordsLost,
      };
    },
    async close() {
      if (!closing) {
        closing = true;
        finalRequested = true;
        clearInterval(intervalTimer);
        if (waitTimer !== undefined) clearTimeout(waitTimer);
        waitTimer = undefined;
        await kick(true);
        if (retryTimer !== undefined) clearTimeout(retryTimer);
        retryTimer = undefined;
        closed = true;
        const unpersisted = queue.length;
        if (unpersisted > 0) notify('recordsLost', unpersisted, 'closed');
        await spool?.close();
      }
      await tail;
      return { chainId, lastSeq: chain.head.seq, terminated, unpersisted: queue.length };
    },
  };

  // The chain-start record is written at once, so even an idle instance's chain exists and witnesses.
  void kick(false);
  return writer;
}

function positive(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new AuditError('ERR_AUDIT_OPTIONS_INVALID', `${name} must be a positive integer`);
  return value;
}
