import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  LogqlError,
  compileEnforcement,
  enforceLogql,
  enforceSelector,
  parseLogql,
  selectors,
  type EnforcedLabels,
  type LabelMatcher,
} from '../../src/logql/index.ts';

const STAGING: EnforcedLabels = new Map([['env', ['staging']]]);
const MULTI: EnforcedLabels = new Map([
  ['env', ['a.b', 'c|d']],
  ['team', ['x"y']],
]);
const STAGING_MATCHER: LabelMatcher = { name: 'env', op: '=', value: 'staging' };
const MULTI_MATCHERS: LabelMatcher[] = [
  { name: 'env', op: '=~', value: '^(?:a\\.b|c\\|d)$' },
  { name: 'team', op: '=', value: 'x"y' },
];

/** Enforces, then proves from the output alone that every selector carries the matchers. */
function checkEnforced(query: string, enforce: EnforcedLabels, expected: LabelMatcher[]): string {
  const before = selectors(parseLogql(query));
  const result = enforceLogql(query, enforce);
  const after = selectors(parseLogql(result.query));
  assert.equal(result.selectors, before.length, 'selector count reported');
  assert.equal(after.length, before.length, 'selector count of the output');
  after.forEach((sel, i) => {
    for (const m of expected) {
      const found = sel.some((own) => own.name === m.name && own.op === m.op && own.value === m.value);
      assert.ok(found, `selector ${i} of ${result.query} lacks ${JSON.stringify(m)}`);
    }
    // The user's own matchers stay, first and in order.
    assert.deepStrictEqual(sel.slice(0, before[i]!.length), before[i], `selector ${i} lost a user matcher`);
  });
  return result.query;
}

describe('enforceLogql: exact rewrites', () => {
  const cases: Array<[string, EnforcedLabels, string]> = [
    ['{app="api"}', STAGING, '{app="api", env="staging"}'],
    ['{env=~".*"}', STAGING, '{env=~".*", env="staging"}'],
    ['{env!="staging"}', STAGING, '{env!="staging", env="staging"}'],
    ['{env!~"staging|prod"}', STAGING, '{env!~"staging|prod", env="staging"}'],
    ['{env="prod"}', STAGING, '{env="prod", env="staging"}'],
    ['{env="staging"}', STAGING, '{env="staging"}'],
    ['{env="prod", env="prod"}', STAGING, '{env="prod", env="prod", env="staging"}'],
    ['{app="a"}', MULTI, '{app="a", env=~"^(?:a\\\\.b|c\\\\|d)$", team="x\\"y"}'],
    ['{app="a"} |= "{env=\\"prod\\"}"', STAGING, '{app="a", env="staging"} |= "{env=\\"prod\\"}"'],
    ['{app="a"} |~ `}{`', STAGING, '{app="a", env="staging"} |~ "}{"'],
    ['{app="a"} # comment with { braces } {env="prod"}', STAGING, '{app="a", env="staging"}'],
    ['{app="a"} /* {env="prod"} */ |= "#"', STAGING, '{app="a", env="staging"} |= "#"'],
    ['{app="a"} |= "# not a comment {x=\\"y\\"}"', STAGING, '{app="a", env="staging"} |= "# not a comment {x=\\"y\\"}"'],
    ['{app="☃"} |= "日本"', STAGING, '{app="☃", env="staging"} |= "日本"'],
    [
      'sum by (app) (rate({app="api"} |= "error" [5m]))',
      STAGING,
      'sum(rate({app="api", env="staging"} |= "error" [5m])) by (app)',
    ],
    [
      'quantile_over_time(0.99, {app="a"} | json | unwrap latency [1m]) by (x)',
      STAGING,
      'quantile_over_time(0.99, {app="a", env="staging"} | json | unwrap latency [1m]) by (x)',
    ],
    [
      'sum_over_time({app="a"} | unwrap x | __error__="" [5m] offset 1h)',
      STAGING,
      'sum_over_time({app="a", env="staging"} | unwrap x | __error__="" [5m] offset 1h)',
    ],
    ['vector(1)', STAGING, 'vector(1)'],
    ['1 + 1', STAGING, '1 + 1'],
  ];
  for (const [query, enforce, expected] of cases) {
    it(`rewrites ${JSON.stringify(query)}`, () => {
      assert.equal(enforceLogql(query, enforce).query, expected);
    });
  }

  it('reports zero selectors for a query that reads no logs', () => {
    assert.deepStrictEqual(enforceLogql('vector(1) + 2', STAGING), { query: 'vector(1) + 2', selectors: 0 });
  });

  it('is idempotent', () => {
    const once = enforceLogql('sum(rate({app="a"}[5m])) / sum(rate({app="b"}[5m]))', MULTI).query;
    assert.equal(enforceLogql(once, MULTI).query, once);
  });

  it('never emits an empty-value matcher for an enforced label', () => {
    for (const query of ['{app="a"}', '{env=""}', 'rate({env=~""}[5m]) or rate({team!=""}[5m])']) {
      const added = selectors(parseLogql(enforceLogql(query, MULTI).query)).flatMap((sel) => sel.slice(-2));
      assert.ok(added.every((m) => m.value !== ''), JSON.stringify(added));
    }
  });
});

describe('enforceLogql: selectors in every syntactic position', () => {
  const positions: Array<[string, number]> = [
    ['{a="1"}', 1],
    ['{a="1"} |= "x" | json | b="2"', 1],
    ['rate({a="1"}[5m]) or rate({b="2"}[5m])', 2],
    ['rate({a="1"}[5m]) and rate({b="2"}[5m])', 2],
    ['rate({a="1"}[5m]) unless rate({b="2"}[5m])', 2],
    ['rate({a="1"}[5m]) + rate({b="2"}[5m]) - rate({c="3"}[5m]) * rate({d="4"}[5m]) / rate({e="5"}[5m])', 5],
    ['rate({a="1"}[5m]) % rate({b="2"}[5m]) ^ rate({c="3"}[5m])', 3],
    ['rate({a="1"}[5m]) > bool rate({b="2"}[5m])', 2],
    ['rate({a="1"}[5m]) == bool on (x) group_left (y) rate({b="2"}[5m])', 2],
    ['rate({a="1"}[5m]) != ignoring (x) group_right rate({b="2"}[5m])', 2],
    ['label_replace(rate({a="1"}[5m]), "d", "$1", "s", "(.*)")', 1],
    ['label_replace(rate({a="1"}[5m]) / rate({b="2"}[5m]), "d", "$1", "s", "(.*)")', 2],
    ['sum by (x) (rate({a="1"}[5m]))', 1],
    ['sum(rate({a="1"}[5m])) without (x)', 1],
    ['topk(3, rate({a="1"}[5m]))', 1],
    ['bottomk(3, sum by (x) (rate({a="1"}[5m]) or rate({b="2"}[5m])))', 2],
    ['approx_topk(3, sum by (x) (rate({a="1"}[5m])))', 1],
    ['sort(rate({a="1"}[5m])) + sort_desc(rate({b="2"}[5m]))', 2],
    ['((((rate({a="1"}[5m])))))', 1],
    ['(rate({a="1"}[5m]) + (rate({b="2"}[5m]) * (rate({c="3"}[5m]))))', 3],
    ['count_over_time(({a="1"} |= "x")[5m])', 1],
    ['count_over_time((({a="1"})[5m] offset 1h))', 1],
    ['sum_over_time({a="1"} | unwrap x | __error__="" [5m] offset 1h)', 1],
    ['sum_over_time({a="1"}[5m] offset 1h | json | unwrap bytes(x) | __error__="")', 1],
    ['quantile_over_time(0.99, {a="1"} | json | unwrap latency [1m]) by (x)', 1],
    ['absent_over_time({a="1"}[5m]) or vector(0)', 1],
    ['vector(1) + count_over_time({a="1"}[5m])', 1],
    ['1 - count_over_time({a="1"}[5m]) * 2', 1],
    ['sum(rate({a="1"}[5m])) by (x) / on (x) group_left sum(rate({b="2"}[5m])) by (x) > bool 0.5', 2],
    ['max(max_over_time({a="1"} | logfmt | unwrap bytes(size) [1h])) by (h) / max(max_over_time({b="2"} | logfmt | unwrap bytes(size) [1h])) by (h)', 2],
  ];
  for (const [query, count] of positions) {
    it(`enforces all ${count} selector(s) of ${query}`, () => {
      assert.equal(selectors(parseLogql(query)).length, count);
      checkEnforced(query, STAGING, [STAGING_MATCHER]);
      checkEnforced(query, MULTI, MULTI_MATCHERS);
    });
  }

  const adversarial: string[] = [
    '{env!="staging"}',
    '{env!~"staging"}',
    '{env=~".*"}',
    '{env=~".+", env=~"sta.*"}',
    '{env="prod"}',
    '{env="staging", env="prod"}',
    '{team=~".*", env!~"^s"}',
    '{app="a"} | env="prod"',
    '{app="a"} | label_format env=app',
    '{app="a"} | drop env',
    'sum(rate({env!="staging"}[5m])) by (env)',
    'label_replace(rate({app="a"}[5m]), "env", "prod", "", "")',
  ];
  for (const query of adversarial) {
    it(`still ANDs the enforced matcher into ${query}`, () => {
      checkEnforced(query, STAGING, [STAGING_MATCHER]);
      checkEnforced(query, MULTI, MULTI_MATCHERS);
    });
  }
});

describe('compileEnforcement', () => {
  it('uses an equality matcher for one value and an anchored, escaped alternation for several', () => {
    assert.deepStrictEqual(compileEnforcement(STAGING), [STAGING_MATCHER]);
    assert.deepStrictEqual(compileEnforcement(MULTI), MULTI_MATCHERS);
    assert.deepStrictEqual(compileEnforcement(new Map([['env', ['a', 'a']]])), [{ name: 'env', op: '=', value: 'a' }]);
  });

  it('escapes every regular expression metacharacter', () => {
    const values = ['a.b', 'c|d', 'e*', 'f+', 'g?', '(h)', '[i]', '{j}', '^k$', 'l\\m', 'n o', '.*', 'ü', '-'];
    const [m] = compileEnforcement(new Map([['env', values]]));
    assert.ok(m !== undefined && m.op === '=~');
    // JavaScript and RE2 read these escapes the same way.
    const re = new RegExp(m.value, 'u');
    for (const v of values) assert.ok(re.test(v), `should match ${v}`);
    for (const v of ['aXb', 'c', 'd', 'e', 'eee', 'f', 'g', 'h', 'i', 'j', 'k', 'lm', 'anything', '', 'a.bc', 'xa.b']) {
      assert.ok(!re.test(v), `should not match ${JSON.stringify(v)}`);
    }
  });

  const bad: Array<[string, unknown]> = [
    ['an empty map', new Map()],
    ['a plain object', { env: ['a'] }],
    ['an empty allowed list', new Map([['env', []]])],
    ['an empty-string value', new Map([['env', ['']]])],
    ['an empty-string value among others', new Map([['env', ['a', '']]])],
    ['a non-string value', new Map([['env', [1]]])],
    ['a non-array list', new Map([['env', 'staging']])],
    ['a lone surrogate value', new Map([['env', ['\ud800']]])],
    ['a label name with a dash', new Map([['my-env', ['a']]])],
    ['a label name starting with a digit', new Map([['1env', ['a']]])],
    ['an empty label name', new Map([['', ['a']]])],
    ['a label name with syntax in it', new Map([['env="x"}', ['a']]])],
    ['a keyword as label name', new Map([['by', ['a']]])],
    ['a keyword in capitals as label name', new Map([['OR', ['a']]])],
  ];
  for (const [name, enforce] of bad) {
    it(`refuses ${name} with ERR_LOGQL_ENFORCE`, () => {
      for (const call of [
        () => compileEnforcement(enforce as EnforcedLabels),
        () => enforceLogql('{app="a"}', enforce as EnforcedLabels),
        () => enforceSelector('{app="a"}', enforce as EnforcedLabels),
      ]) {
        assert.throws(call, (err: unknown) => err instanceof LogqlError && err.code === 'ERR_LOGQL_ENFORCE');
      }
    });
  }

  it('accepts label names that are function words', () => {
    assert.equal(enforceLogql('{app="a"}', new Map([['count', ['1']]])).query, '{app="a", count="1"}');
  });
});

describe('enforceLogql: refusals', () => {
  const refused: Array<[string, string]> = [
    ['{app="a"', 'ERR_LOGQL_PARSE'],
    ['{}', 'ERR_LOGQL_PARSE'],
    ['{app="a"} garbage', 'ERR_LOGQL_PARSE'],
    ['app="a"', 'ERR_LOGQL_PARSE'],
    ['{app="a"} |= `x', 'ERR_LOGQL_PARSE'],
    ['count_values("v", rate({a="b"}[5m]))', 'ERR_LOGQL_PARSE'],
    ['rate({a="b"}[5m:1m])', 'ERR_LOGQL_PARSE'],
    [`{a="${'x'.repeat(70_000)}"}`, 'ERR_LOGQL_TOO_LARGE'],
    [`${'('.repeat(80)}rate({a="b"}[5m])${')'.repeat(80)}`, 'ERR_LOGQL_TOO_LARGE'],
  ];
  for (const [query, code] of refused) {
    it(`refuses ${JSON.stringify(query.slice(0, 60))} with ${code}`, () => {
      assert.throws(() => enforceLogql(query, STAGING), (err: unknown) => err instanceof LogqlError && err.code === code);
    });
  }

  it('checks the enforcement before reading the query', () => {
    assert.throws(() => enforceLogql('{app="a"', new Map()), { code: 'ERR_LOGQL_ENFORCE' });
  });

  it('passes limits through', () => {
    assert.throws(() => enforceLogql('{app="abc"}', STAGING, { maxLength: 5 }), { code: 'ERR_LOGQL_TOO_LARGE' });
    assert.equal(enforceLogql('{app="abc"}', STAGING, { maxLength: 11 }).selectors, 1);
  });

  it('enforces a 64 KiB query', () => {
    const stages = Array.from({ length: 2000 }, (_, i) => ` |= "w${i}"`).join('');
    const query = `{app="a"}${stages} |= "${'x'.repeat(64 * 1024 - 30 - stages.length)}"`;
    assert.ok(query.length <= 64 * 1024);
    assert.equal(enforceLogql(query, MULTI).selectors, 1);
  });
});

describe('enforceSelector', () => {
  const ok: Array<[string, EnforcedLabels, string]> = [
    ['{app="a"}', STAGING, '{app="a", env="staging"}'],
    [' { app = `a` } ', STAGING, '{app="a", env="staging"}'],
    ['({app="a"})', STAGING, '{app="a", env="staging"}'],
    ['{app="a"} # {env="prod"}', STAGING, '{app="a", env="staging"}'],
    ['{env=~".*"}', STAGING, '{env=~".*", env="staging"}'],
    ['{env!="staging"}', STAGING, '{env!="staging", env="staging"}'],
    ['{app="a"}', new Map([['team', ['a', 'b']]]), '{app="a", team=~"^(?:a|b)$"}'],
    ['{app="a"}', MULTI, '{app="a", env=~"^(?:a\\\\.b|c\\\\|d)$", team="x\\"y"}'],
  ];
  for (const [text, enforce, expected] of ok) {
    it(`rewrites ${JSON.stringify(text)}`, () => {
      assert.equal(enforceSelector(text, enforce), expected);
    });
  }

  const refused = [
    '{app="a"} |= "x"',
    '{app="a"} | json',
    'rate({app="a"}[5m])',
    'vector(1)',
    '{}',
    '',
    'app="a"',
    '{app="a"}, {b="c"}',
    '{app="a"} {b="c"}',
  ];
  for (const text of refused) {
    it(`refuses ${JSON.stringify(text)} as not a bare selector`, () => {
      assert.throws(() => enforceSelector(text, STAGING), { code: 'ERR_LOGQL_PARSE' });
    });
  }
});
