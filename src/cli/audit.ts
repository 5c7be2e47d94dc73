/**
 * `portcullis audit ...`: the auditors' tools. They read the store directly (read-only where they can) and
 * trust public keys from a file the auditors hold, never from the database.
 * Exit codes of `verify`: 0 valid, 1 tampered or lost, 2 could not verify.
 */
import { mkdirSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { exportAnchors, exportSegment } from '../audit/export.ts';
import { generateAuditKey, loadAuditSigner, loadTrustedKeys, trustedKeysDocument } from '../audit/keys.ts';
import { openAuditStore } from '../audit/open-store.ts';
import { pruneAudit } from '../audit/prune.ts';
import { queryAudit, withChainFields } from '../audit/query.ts';
import { hashForSearch } from '../audit/redact.ts';
import { verifyAudit } from '../audit/verify.ts';
import { parseDuration } from '../tools/duration.ts';

const fail = (message: string, code = 2): never => {
  process.stderr.write(`portcullis: ${message}\n`);
  process.exit(code);
};

const time = (value: string | undefined, name: string): Date | undefined => {
  if (value === undefined) return undefined;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? fail(`${name} must be an RFC 3339 time, got "${value}"`) : d;
};

export function registerAudit(program: Command): void {
  const audit = program.command('audit').description('Verify, query, prune and export the tamper-evident audit log');

  audit
    .command('verify')
    .description('Walk every chain: exit 0 valid, 1 tampered or lost, 2 could not verify')
    .requiredOption('--store <url>', 'sqlite:path or postgres://...')
    .requiredOption('--trusted-keys <file>', 'public keys the auditors trust (JSON {keys:[{kid, publicKeyPem}]} or a JWKS)')
    .option('--from <time>', 'RFC 3339 start of the range')
    .option('--to <time>', 'RFC 3339 end of the range')
    .option('--chain <id>', 'one chain only')
    .option('--anchors <file...>', 'checkpoints exported elsewhere (JSONL): catches a restored old copy')
    .option('--allow-open', 'a chain still being written (no end checkpoint) is not an error')
    .option('--json', 'print the report as JSON')
    .action(async (o: { store: string; trustedKeys: string; from?: string; to?: string; chain?: string; anchors?: string[]; allowOpen?: boolean; json?: boolean }) => {
      let report;
      try {
        const trustedKeys = await loadTrustedKeys(o.trustedKeys);
        const store = await openAuditStore(o.store, { readOnly: true });
        try {
          report = await verifyAudit({ store, trustedKeys, from: time(o.from, '--from'), to: time(o.to, '--to'), chainId: o.chain, anchors: o.anchors, allowOpenChains: o.allowOpen });
        } finally {
          await store.close();
        }
      } catch (error) {
        return fail(`could not verify: ${(error as Error).message}`, 2);
      }
      if (o.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      else {
        for (const f of report.findings) process.stdout.write(`${f.severity.toUpperCase().padEnd(7)} ${f.code.padEnd(26)} chain ${f.chainId} seq ${f.seq}  ${f.detail}\n`);
        const s = report.stats;
        process.stdout.write(`${report.status}: ${s.chains} chain(s), ${s.records} record(s), ${s.checkpoints} checkpoint(s), ${s.anchors} anchor(s); ${report.errors} error(s), ${report.warnings} warning(s)${report.failure ? `; ${report.failure.code}: ${report.failure.message}` : ''}\n`);
      }
      process.exitCode = report.exitCode;
    });

  audit
    .command('query')
    .description('Find records by subject, decision, route, reason and time')
    .requiredOption('--store <url>', 'sqlite:path or postgres://...')
    .option('--subject <sub>', 'user.id (with --hmac-key-*, also its HMAC form)')
    .option('--decision <d>', 'allowed | denied')
    .option('--route <id>', 'route id')
    .option('--reason <code>', 'error code, e.g. ERR_TOKEN_EXPIRED')
    .option('--from <time>', 'RFC 3339, inclusive')
    .option('--to <time>', 'RFC 3339, exclusive')
    .option('--limit <n>', 'at most n records (0: all)', '100')
    .option('--json', 'JSON lines instead of a table')
    .action(async (o: { store: string; subject?: string; decision?: string; route?: string; reason?: string; from?: string; to?: string; limit: string; json?: boolean }) => {
      if (o.decision !== undefined && o.decision !== 'allowed' && o.decision !== 'denied') fail('--decision must be allowed or denied');
      const store = await openAuditStore(o.store, { readOnly: true }).catch((e: Error) => fail(e.message));
      try {
        const rows = queryAudit(store, { subject: o.subject, decision: o.decision as 'allowed' | 'denied' | undefined, route: o.route, reason: o.reason, from: time(o.from, '--from'), to: time(o.to, '--to'), limit: Number(o.limit) });
        if (!o.json) process.stdout.write(`${'time'.padEnd(24)} ${'decision'.padEnd(8)} ${'status'.padEnd(6)} ${'route'.padEnd(14)} ${'subject'.padEnd(20)} ${'reason'.padEnd(28)} path\n`);
        for await (const row of rows) {
          const r = row.record as Record<string, string | number | undefined>;
          if (o.json) process.stdout.write(JSON.stringify(withChainFields(row)) + '\n');
          else process.stdout.write(`${String(r['@timestamp']).padEnd(24)} ${String(r['event.type']).padEnd(8)} ${String(r['http.response.status_code'] ?? '').padEnd(6)} ${String(r['http.route'] ?? '').padEnd(14)} ${String(r['user.id'] ?? '').padEnd(20)} ${String(r['event.reason'] ?? '').padEnd(28)} ${r['url.path'] ?? ''}\n`);
        }
      } finally {
        await store.close();
      }
    });

  audit
    .command('prune')
    .description('Remove whole checkpoint-aligned segments older than a cutoff, after a signed prune record')
    .requiredOption('--store <url>', 'sqlite:path or postgres://...')
    .requiredOption('--older-than <duration>', 'e.g. 400d')
    .requiredOption('--signing-key <file>', 'Ed25519 private key (PEM) that signs the prune statement')
    .requiredOption('--trusted-keys <file>', 'the auditors\' trusted keys (the segment is verified before it goes)')
    .option('--export-dir <dir>', 'export each pruned segment here first (cold storage)')
    .option('--dry-run', 'say what would be pruned')
    .action(async (o: { store: string; olderThan: string; signingKey: string; trustedKeys: string; exportDir?: string; dryRun?: boolean }) => {
      let ms = 0;
      try {
        ms = parseDuration(o.olderThan);
      } catch (error) {
        fail((error as Error).message);
      }
      const signer = await loadAuditSigner({ file: o.signingKey });
      const trustedKeys = await loadTrustedKeys(o.trustedKeys);
      const store = await openAuditStore(o.store);
      try {
        const result = await pruneAudit({ store, signer, trustedKeys, before: new Date(Date.now() - ms), exportDir: o.exportDir, dryRun: o.dryRun });
        process.stdout.write(JSON.stringify(result, null, 2) + '\n');
        if (result.refused.length > 0) process.exitCode = 1;
      } finally {
        await store.close();
      }
    });

  audit
    .command('export')
    .description('Write a chain segment (records and checkpoints) as JSONL for cold storage, or every checkpoint as anchors')
    .requiredOption('--store <url>', 'sqlite:path or postgres://...')
    .requiredOption('--out <file>', 'output JSONL (never overwritten)')
    .option('--chain <id>', 'the chain to export (records); without it, --anchors is required')
    .option('--from-seq <n>', 'first seq')
    .option('--to-seq <n>', 'last seq')
    .option('--anchors', 'export every checkpoint (an external anchor for verify --anchors)')
    .action(async (o: { store: string; out: string; chain?: string; fromSeq?: string; toSeq?: string; anchors?: boolean }) => {
      if (!o.anchors && o.chain === undefined) fail('give --chain <id> or --anchors');
      const store = await openAuditStore(o.store, { readOnly: true });
      try {
        if (o.anchors) process.stdout.write(`${await exportAnchors({ store, out: o.out, chainId: o.chain })} checkpoint(s) written to ${o.out}\n`);
        else {
          const r = await exportSegment({ store, chainId: o.chain!, fromSeq: o.fromSeq === undefined ? undefined : Number(o.fromSeq), toSeq: o.toSeq === undefined ? undefined : Number(o.toSeq), out: o.out });
          process.stdout.write(`${r.records} record(s), ${r.checkpoints} checkpoint(s) written to ${o.out}\n`);
        }
      } finally {
        await store.close();
      }
    });

  audit
    .command('hash')
    .description('The keyed HMAC of a value as it appears in redacted records, to search for it')
    .requiredOption('--key-id <id>', 'the redaction key id (the <key id> in hmac-sha256:<key id>:<hex>)')
    .option('--key-file <file>', 'the redaction key')
    .option('--key-env <name>', 'environment variable holding the redaction key')
    .argument('<value>', 'the value to hash (an email, a subject, ...)')
    .action((value: string, o: { keyId: string; keyFile?: string; keyEnv?: string }) => {
      if ((o.keyFile === undefined) === (o.keyEnv === undefined)) fail('give exactly one of --key-file or --key-env');
      const key = o.keyFile !== undefined ? readFileSync(o.keyFile, 'utf8').replace(/\r?\n$/, '') : process.env[o.keyEnv!];
      if (!key) fail('the redaction key is empty or unset');
      process.stdout.write(hashForSearch(o.keyId, new TextEncoder().encode(key), value) + '\n');
    });

  audit
    .command('keys')
    .description('Generate an Ed25519 checkpoint signing key and the trusted-keys file for auditors')
    .requiredOption('--out <dir>', 'writes audit-signing.pem (0600) and trusted-keys.json')
    .option('--kid <kid>', 'key id (default: thumbprint)')
    .action((o: { out: string; kid?: string }) => {
      mkdirSync(o.out, { recursive: true, mode: 0o700 });
      const pem = join(o.out, 'audit-signing.pem');
      if (existsSync(pem)) fail(`${pem} exists; refusing to overwrite a signing key`);
      const key = generateAuditKey(o.kid);
      writeFileSync(pem, key.privateKeyPem, { mode: 0o600 });
      writeFileSync(join(o.out, 'trusted-keys.json'), trustedKeysDocument([key.signer]));
      process.stdout.write(`kid ${key.signer.kid}\nsigning key  ${pem} (keep it off the audit database host)\ntrusted keys ${join(o.out, 'trusted-keys.json')} (give it to the auditors)\n`);
    });
}
