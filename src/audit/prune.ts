/**
 * Retention: `portcullis audit prune --before <time>`.
 *
 * Only whole checkpoint-aligned segments are pruned: for each chain, everything up to its last trusted
 * checkpoint older than the cutoff. Before deleting, the prefix is verified (a tampered segment is refused, not
 * destroyed), optionally exported as JSONL, and a prune statement naming the boundary seq and hash is signed.
 * The statement and the deletion commit in one transaction, and the boundary checkpoint is kept, so what
 * remains still verifies: the first remaining record links to the statement's hash, and the statement matches
 * the kept checkpoint.
 */
import { join } from 'node:path';
import { checkCheckpoint, signPrune } from './checkpoint.ts';
import type { Checkpoint } from './checkpoint.ts';
import { AuditError } from './errors.ts';
import { exportSegment } from './export.ts';
import type { AuditSigner, TrustedKeys } from './keys.ts';
import type { AuditStore } from './store.ts';
import { verifyChainPrefix } from './verify.ts';
import type { Finding } from './verify.ts';

export interface PruneOptions {
  readonly store: AuditStore;
  /** Signs the prune statements; its kid must be among `trustedKeys`, or verify would reject them. */
  readonly signer: AuditSigner;
  readonly trustedKeys: TrustedKeys;
  /** Prune segments whose boundary checkpoint is older than this. */
  readonly before: Date;
  /** Only this chain. */
  readonly chainId?: string;
  /** Export each segment to `<dir>/<chain_id>-<from>-<through>.jsonl` before deleting it. */
  readonly exportDir?: string;
  /** Report what would be pruned, change nothing. */
  readonly dryRun?: boolean;
  readonly now?: () => number;
}

export interface PrunedSegment {
  readonly chainId: string;
  readonly fromSeq: number;
  readonly throughSeq: number;
  /** Rows deleted (0 in a dry run). */
  readonly records: number;
  readonly checkpoints: number;
  readonly exportFile?: string;
}

export interface PruneRefusal {
  readonly chainId: string;
  readonly throughSeq: number;
  readonly reason: string;
  readonly findings: readonly Finding[];
}

export interface PruneReport {
  readonly pruned: readonly PrunedSegment[];
  readonly refused: readonly PruneRefusal[];
}

/** Codes that do not stop a prune: a recorded loss is history, not tampering. */
const TOLERATED: ReadonlySet<string> = new Set(['LOSS_RECORDED']);

/**
 * Prunes every chain (or one) up to its last trusted checkpoint before `before`.
 *
 * @example const report = await pruneAudit({ store, signer, trustedKeys, before: new Date(Date.now() - 90 * 864e5), exportDir: 'archive' });
 * @throws AuditError `ERR_AUDIT_PRUNE_REFUSED` when the signer's kid is not trusted; store errors.
 */
export async function pruneAudit(options: PruneOptions): Promise<PruneReport> {
  const { store, signer, trustedKeys } = options;
  if (trustedKeys.get(signer.kid) === undefined) {
    throw new AuditError('ERR_AUDIT_PRUNE_REFUSED', `prune signing key ${JSON.stringify(signer.kid)} is not among the trusted keys; verify would reject its statements`);
  }
  const now = options.now ?? Date.now;
  const cutoff = options.before.getTime();
  const pruned: PrunedSegment[] = [];
  const refused: PruneRefusal[] = [];
  const chains = options.chainId !== undefined ? [options.chainId] : store.chainIds();
  for await (const chainId of chains) {
    const prunes = await store.prunes(chainId);
    const done = prunes.reduce((max, p) => Math.max(max, p.throughSeq), 0);
    let boundary: Checkpoint | undefined;
    for await (const cp of store.checkpoints(chainId, { fromSeq: done + 1 })) {
      if (Date.parse(cp.time) >= cutoff) break;
      if (checkCheckpoint(cp, trustedKeys) === 'valid') boundary = cp;
    }
    if (boundary === undefined) continue;

    const findings: Finding[] = [];
    for await (const f of verifyChainPrefix({ store, trustedKeys, chainId, throughSeq: boundary.seq })) {
      if (f.severity === 'error' && !TOLERATED.has(f.code)) findings.push(f);
      if (findings.length >= 100) break;
    }
    if (findings.length > 0) {
      refused.push({ chainId, throughSeq: boundary.seq, reason: 'the segment does not verify; it is kept as evidence', findings });
      continue;
    }
    const record = await store.entryAt(chainId, boundary.seq);
    if (record === undefined || record.hash !== boundary.headHash) {
      refused.push({ chainId, throughSeq: boundary.seq, reason: 'the boundary record does not match its checkpoint', findings: [] });
      continue;
    }
    if (options.dryRun) {
      pruned.push({ chainId, fromSeq: done + 1, throughSeq: boundary.seq, records: 0, checkpoints: 0 });
      continue;
    }
    let exportFile: string | undefined;
    if (options.exportDir !== undefined) {
      exportFile = join(options.exportDir, `${chainId}-${done + 1}-${boundary.seq}.jsonl`);
      await exportSegment({ store, chainId, fromSeq: done + 1, toSeq: boundary.seq, out: exportFile });
    }
    const statement = signPrune({ chainId, throughSeq: boundary.seq, lastHash: boundary.headHash, time: new Date(now()).toISOString() }, signer);
    const deleted = await store.prune(statement);
    pruned.push({ chainId, fromSeq: done + 1, throughSeq: boundary.seq, ...deleted, ...(exportFile === undefined ? {} : { exportFile }) });
  }
  return { pruned, refused };
}
