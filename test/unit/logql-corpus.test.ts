import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import {
  enforceLogql,
  parseLogql,
  selectors,
  serializeLogql,
  type EnforcedLabels,
  type LabelMatcher,
} from '../../src/logql/index.ts';

/** One query per line; empty lines and lines starting with `#` are the file's own comments. */
const CORPUS = readFileSync(new URL('../fixtures/logql-corpus.txt', import.meta.url), 'utf8')
  .split('\n')
  .filter((line) => line.trim() !== '' && !line.startsWith('#'));

const ENFORCEMENTS: Array<[string, EnforcedLabels, LabelMatcher[]]> = [
  ['env=staging', new Map([['env', ['staging']]]), [{ name: 'env', op: '=', value: 'staging' }]],
  [
    'env in (a.b, c|d), team=x"y',
    new Map([
      ['env', ['a.b', 'c|d']],
      ['team', ['x"y']],
    ]),
    [
      { name: 'env', op: '=~', value: '^(?:a\\.b|c\\|d)$' },
      { name: 'team', op: '=', value: 'x"y' },
    ],
  ],
];

function has(sel: LabelMatcher[], m: LabelMatcher): boolean {
  return sel.some((own) => own.name === m.name && own.op === m.op && own.value === m.value);
}

describe('LogQL corpus', () => {
  it('holds at least 300 distinct queries', () => {
    assert.ok(CORPUS.length >= 300, `only ${CORPUS.length}`);
    assert.equal(new Set(CORPUS).size, CORPUS.length, 'duplicate lines');
  });

  it('covers every construct the feature must understand', () => {
    const text = CORPUS.join('\n');
    const constructs = [
      /\|=/, /!=/, /\|~/, /!~/, /\|>/, /!>/, / or "/, /ip\("/, /\| json/, /\| logfmt --strict --keep-empty/,
      /\| regexp/, /\| pattern/, /\| unpack/, /\| line_format/, /\| label_format/, /\| drop/, /\| keep/,
      /\| decolorize/, /__error__=""/, /\| unwrap duration\(/, /unwrap duration_seconds\(/, /unwrap bytes\(/,
      /offset/, /> bool/, /on \(/, /ignoring \(/, /group_left/, /group_right/, /label_replace/, /vector\(/,
      /absent_over_time/, /quantile_over_time\(0\.99/, /topk/, /bottomk/, /sort\(/, /sort_desc/, /approx_topk/,
      /first_over_time/, /last_over_time/, /rate_counter/, /bytes_rate/, /unless/, / and /, /`/, /#/, /\\"/,
      /[^\x00-\x7f]/, /\d+ms/, /\d+MB/, /KiB/, /COUNT_OVER_TIME|SUM BY/,
    ];
    for (const c of constructs) assert.match(text, c);
  });

  for (const query of CORPUS) {
    it(`parses, round-trips and enforces ${query}`, () => {
      const ast = parseLogql(query);
      const canonical = serializeLogql(ast);
      assert.deepStrictEqual(parseLogql(canonical), ast, `re-parse of ${canonical}`);
      assert.equal(serializeLogql(parseLogql(canonical)), canonical, 'canonical text is a fixed point');
      const before = selectors(ast);

      for (const [, enforce, expected] of ENFORCEMENTS) {
        const result = enforceLogql(query, enforce);
        assert.equal(result.selectors, before.length);
        const reparsed = parseLogql(result.query);
        assert.equal(serializeLogql(reparsed), result.query, 'enforced output is canonical');
        const after = selectors(reparsed);
        assert.equal(after.length, before.length, 'selector count changed');
        after.forEach((sel, i) => {
          for (const m of expected) assert.ok(has(sel, m), `selector ${i} of ${result.query} lacks ${m.name}`);
          assert.deepStrictEqual(sel.slice(0, before[i]!.length), before[i], `selector ${i} lost user matchers`);
        });
        assert.equal(enforceLogql(result.query, enforce).query, result.query, 'enforcement is idempotent');
      }
    });
  }
});
