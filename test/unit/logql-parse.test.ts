import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LabelFilter, LogqlAst } from '../../src/logql/ast.ts';
import { LogqlError, parseLogql, selectors, serializeLogql, type LogqlLimits } from '../../src/logql/index.ts';

function roundTrip(query: string): string {
  const ast = parseLogql(query);
  const text = serializeLogql(ast);
  assert.deepStrictEqual(parseLogql(text), ast, `re-parse of ${text}`);
  return text;
}

function logFilter(query: string): LabelFilter {
  const ast = parseLogql(query);
  assert.equal(ast.type, 'log');
  if (ast.type !== 'log') throw new Error('unreachable');
  const stage = ast.pipeline.at(-1);
  assert.equal(stage?.type, 'label_filter');
  if (stage?.type !== 'label_filter') throw new Error('unreachable');
  return stage.filter;
}

/** A compact picture of a label filter tree: `(a and (b or c))`. */
function shape(f: LabelFilter): string {
  switch (f.type) {
    case 'and':
    case 'or':
      return `(${shape(f.left)} ${f.type} ${shape(f.right)})`;
    case 'matcher':
      return f.matcher.name;
    default:
      return f.name;
  }
}

describe('serializeLogql: canonical output', () => {
  const cases: Array<[string, string]> = [
    ['{app="a"}', '{app="a"}'],
    ['{ app = "a" , env=~`x.*` }', '{app="a", env=~"x.*"}'],
    ['{app=`C:\\path`}', '{app="C:\\\\path"}'],
    ['{app="a"} |~ `}{`', '{app="a"} |~ "}{"'],
    ['{app="a"} |= "{env=\\"prod\\"}"', '{app="a"} |= "{env=\\"prod\\"}"'],
    ['{app="a"} # comment with { braces }', '{app="a"}'],
    ['{app="a"} /* {x="y"} */ |= "#"', '{app="a"} |= "#"'],
    ['{app="a"} // {x="y"}', '{app="a"}'],
    ['{app="\\u00e9\\x41\\101\\t"}', '{app="éAA\\t"}'],
    ['{app="\\xc3\\xa9"}', '{app="é"}'],
    ['{app="\\a\\v\\f\\b\\x7f\\x01"}', '{app="\\x07\\x0b\\x0c\\x08\\x7f\\x01"}'],
    ['{app=`line\nbreak`}', '{app="line\\nbreak"}'],
    ['{app="☃ 日本 🚀"}', '{app="☃ 日本 🚀"}'],
    ['SUM BY (App) (RATE({a="b"}[5m]))', 'sum(rate({a="b"}[5m])) by (App)'],
    ['count_over_time({a="b"}[5m] | json)', 'count_over_time({a="b"} | json [5m])'],
    ['count_over_time({a="b"}[5m] offset 1h | json)', 'count_over_time({a="b"} | json [5m] offset 1h)'],
    ['count_over_time(({a="b"} |= "x")[5m])', 'count_over_time({a="b"} |= "x" [5m])'],
    ['count_over_time((({a="b"}[5m])))', 'count_over_time({a="b"}[5m])'],
    ['sum_over_time(({a="b"})[5m] offset 1h | unwrap x)', 'sum_over_time({a="b"} | unwrap x [5m] offset 1h)'],
    ['sum_over_time({a="b"} | unwrap Bytes(x) | __error__="" [5m])', 'sum_over_time({a="b"} | unwrap bytes(x) | __error__="" [5m])'],
    ['topk by (a) (3, rate({a="b"}[5m]))', 'topk(3, rate({a="b"}[5m])) by (a)'],
    ['sum(rate({a="b"}[5m])) / on(x) group_left sum(rate({c="d"}[5m]))', 'sum(rate({a="b"}[5m])) / on (x) group_left () sum(rate({c="d"}[5m]))'],
    ['1 - - 0', '1 - - 0'],
    ['1 - -1', '1 - -1'],
    ['- 0e5', '- 0e5'],
    ['(1 + 2) * 3', '(1 + 2) * 3'],
    ['1 + (2 * 3)', '1 + 2 * 3'],
    ['1 - (2 - 3)', '1 - (2 - 3)'],
    ['(1 - 2) - 3', '1 - 2 - 3'],
    ['2 ^ (3 ^ 4)', '2 ^ 3 ^ 4'],
    ['(2 ^ 3) ^ 4', '(2 ^ 3) ^ 4'],
    ['{a="b"} | x="1", y="2" or z="3"', '{a="b"} | x="1", y="2" or z="3"'],
    ['{a="b"} | x="1" and (y="2" or z="3")', '{a="b"} | x="1", y="2" or z="3"'],
    ['{a="b"} | x="1", y="2", z="3"', '{a="b"} | x="1", y="2" and z="3"'],
    ['{a="b"} | (a="1" or b="2"), (c="3" or d="4")', '{a="b"} | (a="1" or b="2"), c="3" or d="4"'],
    ['{a="b"} | a="1" or (b="2" or c="3")', '{a="b"} | a="1" or (b="2" or c="3")'],
    ['{a="b"} | (a="1", b="2") or c="3"', '{a="b"} | a="1" and b="2" or c="3"'],
    ['{a="b"} | x="1" y="2"', '{a="b"} | x="1" and y="2"'],
    ['{a="b"} | (x="1" or y="2") z="3"', '{a="b"} | (x="1" or y="2") and z="3"'],
    ['{a="b"} | x > 5m | y >= 10MB | z == -2 | w = ip("10.0.0.0/8")', '{a="b"} | x > 5m | y >= 10MB | z == -2 | w=ip("10.0.0.0/8")'],
    ['{a="b"} | JSON A="x", b | LOGFMT --strict C', '{a="b"} | json A="x", b | logfmt --strict C'],
    ['{a="b"} | label_format a=b, c=`{{.d}}` | drop x, y!="z" | keep w', '{a="b"} | label_format a=b, c="{{.d}}" | drop x, y!="z" | keep w'],
    ['label_replace(vector(1), `a`, `b`, `c`, `d`)', 'label_replace(vector(1), "a", "b", "c", "d")'],
  ];
  for (const [input, expected] of cases) {
    it(`writes ${JSON.stringify(input)} as ${JSON.stringify(expected)}`, () => {
      assert.equal(roundTrip(input), expected);
    });
  }
});

describe('parseLogql: what equal queries parse to', () => {
  const equal: Array<[string, string]> = [
    ['{a="b"}', '( {a="b"} )'],
    ['{a="b"}', '{a=`b`}'],
    ['{a="b"} |= "x"', '{a="b"}\n# comment {c="d"}\n|= "x" # another'],
    ['rate({a="b"}[5m])', 'RATE ( {a="b"} [5m] )'],
    ['rate({a="b"}[5m])', 'rate /* c */ ({a="b"}[5m])'],
    ['count_over_time({a="b"} | json [5m])', 'count_over_time({a="b"}[5m] | json)'],
    ['sum by (x) (rate({a="b"}[5m]))', 'sum(rate({a="b"}[5m])) by (x)'],
    ['vector(1) / on (a) group_left vector(1)', 'vector(1) / on (a) group_left () vector(1)'],
    ['{a="b"} | x="1", y="2"', '{a="b"} | x="1" and y="2"'],
    ['{a="b"} | x="1" y="2"', '{a="b"} | x="1" and y="2"'],
    ['{a="\\u00e9"}', '{a="é"}'],
    ['{a="\\x41"}', '{a="A"}'],
    ['\ufeff{a="b"}', '{a="b"}'],
  ];
  for (const [a, b] of equal) {
    it(`${JSON.stringify(a)} equals ${JSON.stringify(b)}`, () => {
      assert.deepStrictEqual(parseLogql(b), parseLogql(a));
    });
  }

  it('keeps stream selectors apart from strings that look like selectors', () => {
    assert.deepStrictEqual(selectors(parseLogql('{app="a"} |= "{env=\\"prod\\"}" |~ `}{` # {x="y"}')), [
      [{ name: 'app', op: '=', value: 'a' }],
    ]);
  });

  it('reads label names that are function words as identifiers', () => {
    assert.deepStrictEqual(selectors(parseLogql('{count="1", rate="2", ip="3", bytes="4", label_replace="5"}')), [
      [
        { name: 'count', op: '=', value: '1' },
        { name: 'rate', op: '=', value: '2' },
        { name: 'ip', op: '=', value: '3' },
        { name: 'bytes', op: '=', value: '4' },
        { name: 'label_replace', op: '=', value: '5' },
      ],
    ]);
  });

  it('tells durations, byte sizes and numbers apart as Loki does', () => {
    const ast = parseLogql('{a="b"} | a > 5m | b > 5M | c > 5 | d > -5s | e > - 5 | f > 1.5KiB | g > 0.5');
    assert.equal(ast.type, 'log');
    if (ast.type !== 'log') return;
    const kinds = ast.pipeline.map((s) => (s.type === 'label_filter' ? s.filter.type : s.type));
    assert.deepStrictEqual(kinds, ['duration', 'bytes', 'number', 'duration', 'number', 'bytes', 'number']);
  });

  const filterShapes: Array<[string, string]> = [
    ['a="1" and b="2" or c="3"', '((a and b) or c)'],
    ['a="1" or b="2" and c="3"', '(a or (b and c))'],
    ['a="1", b="2" or c="3"', '(a and (b or c))'],
    ['a="1" b="2" or c="3"', '(a and (b or c))'],
    ['a="1" or b="2", c="3"', '(a or (b and c))'],
    ['a="1" and b="2", c="3" or d="4"', '(a and (b and (c or d)))'],
    ['a="1" and b="2" and c="3"', '((a and b) and c)'],
    ['a="1" or b="2" or c="3"', '((a or b) or c)'],
    ['a="1", b="2", c="3"', '(a and (b and c))'],
    ['(a="1" or b="2") and c="3"', '((a or b) and c)'],
    ['a="1" or (b="2" or c="3")', '(a or (b or c))'],
  ];
  for (const [filter, expected] of filterShapes) {
    it(`groups label filter ${filter} as ${expected} (syntax.y precedence)`, () => {
      const f = logFilter(`{x="y"} | ${filter}`);
      assert.equal(shape(f), expected);
      assert.equal(shape(logFilter(serializeLogql(parseLogql(`{x="y"} | ${filter}`)))), expected);
    });
  }

  const binaryShapes: Array<[string, string]> = [
    ['vector(1) + vector(2) * vector(3)', '+'],
    ['vector(1) * vector(2) + vector(3)', '+'],
    ['vector(1) or vector(2) and vector(3)', 'or'],
    ['vector(1) > vector(2) + vector(3)', '>'],
    ['vector(1) unless vector(2) or vector(3)', 'or'],
    ['vector(1) ^ vector(2) ^ vector(3)', '^'],
  ];
  for (const [query, top] of binaryShapes) {
    it(`puts ${JSON.stringify(top)} at the top of ${query}`, () => {
      const ast = parseLogql(query);
      assert.equal(ast.type, 'binary');
      if (ast.type === 'binary') assert.equal(ast.op, top);
    });
  }

  it('parses ^ right-associatively and - left-associatively', () => {
    const pow = parseLogql('vector(1) ^ vector(2) ^ vector(3)');
    assert.ok(pow.type === 'binary' && pow.right.type === 'binary');
    const sub = parseLogql('vector(1) - vector(2) - vector(3)');
    assert.ok(sub.type === 'binary' && sub.left.type === 'binary');
  });

  it('records binary modifiers', () => {
    const ast = parseLogql('vector(1) > bool ignoring (a, b) group_right (c) vector(2)');
    assert.deepStrictEqual(ast.type === 'binary' && [ast.bool, ast.matching], [
      true,
      { on: false, labels: ['a', 'b'], group: { side: 'right', labels: ['c'] } },
    ]);
  });

  it('parses a 64 KiB query (long selector, long pipeline) without trouble', () => {
    const matchers = Array.from({ length: 1500 }, (_, i) => `l${i}="v${i}"`).join(', ');
    const stages = Array.from({ length: 1500 }, (_, i) => ` |= "w${i}" or "z${i}"`).join('');
    let query = `{${matchers}}${stages}`;
    query += ' |= "'.concat('x'.repeat(64 * 1024 - query.length - 10), '"');
    assert.ok(query.length <= 64 * 1024 && query.length > 60 * 1024);
    const ast = parseLogql(query);
    assert.equal(selectors(ast)[0]?.length, 1500);
    assert.deepStrictEqual(parseLogql(serializeLogql(ast), { maxLength: 128 * 1024 }), ast);
  });

  it('parses a long operator chain linearly when the depth limit allows it', () => {
    const query = Array.from({ length: 990 }, (_, i) => `rate({a="${i}"}[5m])`).join(' + ');
    const limits = { maxDepth: 1000, maxSelectors: 1000 };
    const ast = parseLogql(query, limits);
    assert.equal(selectors(ast).length, 990);
    // (deepStrictEqual itself recurses too deeply for a 1000-level tree; compare the canonical texts.)
    const text = serializeLogql(ast);
    assert.equal(serializeLogql(parseLogql(text, limits)), text);
  });
});

describe('serializeLogql: generated round trips', () => {
  // A small deterministic generator (mulberry32), so a failure names a reproducible seed.
  function rng(seed: number): () => number {
    let a = seed;
    return () => {
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  function filterText(r: () => number, depth: number): string {
    if (depth === 0 || r() < 0.3) {
      const leaves = ['a="1"', 'b!~"x|y"', 'c > 5', 'd <= 10ms', 'e == 2KB', 'f=ip("10.0.0.1")', 'g >= -1.5'];
      return leaves[Math.floor(r() * leaves.length)]!;
    }
    const joins = [' and ', ' or ', ', ', ' '];
    const text = `${filterText(r, depth - 1)}${joins[Math.floor(r() * joins.length)]}${filterText(r, depth - 1)}`;
    return r() < 0.3 ? `(${text})` : text;
  }
  function metricText(r: () => number, depth: number): string {
    if (depth === 0 || r() < 0.25) {
      const leaves = ['rate({a="1"}[1m])', 'vector(1)', 'sum(rate({b="2"}[1m])) by (x)', '2', '-3'];
      return leaves[Math.floor(r() * leaves.length)]!;
    }
    const ops = ['+', '-', '*', '/', '%', '^', '==', '!=', '>', '<=', '> bool', 'or', 'and', 'unless', '/ on (x) group_left ()'];
    let op = ops[Math.floor(r() * ops.length)]!;
    const left = metricText(r, depth - 1);
    const right = metricText(r, depth - 1);
    // Set operations refuse literals; swap in a vector for those.
    const fix = (t: string): string => (/^-?\d+$/.test(t) && /^(or|and|unless)$/.test(op) ? 'vector(1)' : t);
    if (op.includes('group_left') && (/^-?\d+$/.test(left) || /^-?\d+$/.test(right))) op = '/';
    const text = `${fix(left)} ${op} ${fix(right)}`;
    return r() < 0.35 ? `(${text})` : text;
  }
  for (let seed = 1; seed <= 150; seed++) {
    it(`label filter and binary expression round trip, seed ${seed}`, () => {
      const r = rng(seed);
      const lf = `{x="y"} | ${filterText(r, 4)}`;
      assert.deepStrictEqual(parseLogql(serializeLogql(parseLogql(lf))), parseLogql(lf), lf);
      const m = metricText(r, 4);
      assert.deepStrictEqual(parseLogql(serializeLogql(parseLogql(m))), parseLogql(m), m);
    });
  }
});

describe('parseLogql: refusals', () => {
  const invalid: Array<[string, RegExp]> = [
    ['', /empty query at 0/],
    ['   # only a comment', /empty query/],
    ['{app="a"', /unexpected end of query at 8/],
    ['{app="a"}}', /unexpected "}" at 9/],
    ['{app="a"} extra', /unexpected "extra" at 10/],
    ['{app="a"} |= "x" )', /unexpected "\)"/],
    ['{}', /empty stream selector \{\} is not allowed at 0/],
    ['{ }', /empty stream selector/],
    ['{app="a",}', /unexpected "}" at 9 \(expected a label name\)/],
    ['{app="a" env="b"}', /unexpected "env"/],
    ['app="a"', /unexpected "app" at 0/],
    ['app', /unexpected "app"/],
    ['{app=a}', /unexpected "a" at 5 \(expected a string\)/],
    ['{app=="a"}', /unexpected "=="/],
    ['{app="a"} |= `never closed', /raw string never closed at 13/],
    ['{app="a}', /string literal not terminated at 5/],
    ['{app="a\nb"}', /string literal not terminated/],
    ["{app='a'}", /single quotes/],
    ['{app="a\\q"}', /invalid escape "\\q"/],
    ['{app="a\\\'"}', /invalid escape/],
    ['{app="\\xff"}', /not valid UTF-8/],
    ['{app="\\ud800"}', /invalid escape/],
    ['{app="\\U00110000"}', /invalid escape/],
    ['{app="\\400"}', /invalid escape/],
    ['{app="\\x4"}', /invalid escape/],
    ['{on="x"}', /unexpected "on" at 1 \(expected a label name\)/],
    ['{By="x"}', /unexpected "By"/],
    ['{a.b="x"}', /unexpected "\."/],
    ['{ñ="x"}', /unexpected character "ñ"/],
    ['{a="b"}\u0000', /invalid character NUL/],
    ['{a="\ud800"}', /lone surrogate/],
    ['{a="b"} |= "x" /* never closed', /comment never closed/],
    ['count_values("x", rate({a="b"}[5m]))', /unknown function "count_values" at 0/],
    ['foo({a="b"})', /unknown function "foo"/],
    ['{a="b"} | distinct x', /unexpected "x"/],
    ['{a="b"} | xml', /unexpected "xml"/],
    ['{xml="b"}', /unexpected "xml"/],
    ['variants(count_over_time({a="b"}[5m])) of ({a="b"}[5m])', /variants\(\.\.\.\) of \(\.\.\.\) queries are not supported/],
    ['{a="b"}[5m]', /only allowed inside a range aggregation/],
    ['{a="b"} | unwrap x', /unwrap is only allowed inside a range aggregation/],
    ['rate({a="b"})', /expected a range such as \[5m\]/],
    ['rate({a="b"}[5m:1m])', /subqueries are not supported/],
    ['rate({a="b"}[5 m])', /invalid range/],
    ['rate({a="b"}[1.5m])', /invalid range/],
    ['rate({a="b"}[])', /invalid range/],
    ['rate({a="b"}[5m', /missing closing '\]'/],
    ['rate({a="b"}[5m]', /unexpected end of query/],
    ['rate({a="b"}[5m] [5m])', /unexpected "\[5m\]"/],
    ['rate({a="b"} | json [5m] | logfmt)', /unexpected "\|"/],
    ['rate(({a="b"})[5m] | json)', /unexpected "\|"/],
    ['rate(({a="b"}) [5m] offset 1h offset 1h)', /unexpected "offset"/],
    ['sum(rate({a="b"}[5m]) offset 1h)', /unexpected "offset"/],
    ['sum(rate({a="b"}[5m])) by (x) by (y)', /unexpected "by"/],
    ['sum by (a,) (vector(1))', /unexpected "\)"/],
    ['sum({a="b"})', /needs a metric query, not a log query/],
    ['label_replace({a="b"}, "a", "b", "c", "d")', /needs a metric query/],
    ['label_replace(rate({a="b"}[5m]), "a", "b", "c")', /unexpected "\)" at \d+ \(expected ","\)/],
    ['{a="b"} or {c="d"}', /needs metric queries on both sides/],
    ['rate({a="b"}[5m]) + {c="d"}', /needs metric queries on both sides/],
    ['({a="b"}) != "x"', /unexpected "x"|expected a query/],
    ['{a="b"} |= "x" or vector(1)', /unexpected "vector"/],
    ['rate({a="b"}[5m]) and 1', /set operation "and" cannot take a number literal/],
    ['1 or rate({a="b"}[5m])', /set operation "or"/],
    ['topk(0, rate({a="b"}[5m]))', /positive integer/],
    ['topk(1.5, rate({a="b"}[5m]))', /positive integer/],
    ['topk(rate({a="b"}[5m]))', /topk needs a parameter/],
    ['bottomk(-1, rate({a="b"}[5m]))', /needs a parameter|unexpected/],
    ['sum(3, rate({a="b"}[5m]))', /sum takes no parameter/],
    ['quantile_over_time({a="b"} | unwrap x [5m])', /quantile_over_time needs a parameter/],
    ['rate(0.5, {a="b"}[5m])', /rate takes no parameter/],
    ['count_over_time({a="b"} | unwrap x [5m])', /count_over_time cannot be used with unwrap/],
    ['sum_over_time({a="b"}[5m])', /sum_over_time needs \| unwrap/],
    ['rate({a="b"}[5m]) by (x)', /grouping is not allowed for rate/],
    ['approx_topk(3, rate({a="b"}[5m])) by (x)', /grouping is not allowed for approx_topk/],
    ['sort(rate({a="b"}[5m])) by (x)', /sort does not allow grouping/],
    ['sum_over_time({a="b"} | unwrap x | json [5m])', /unexpected "\|"/],
    ['sum_over_time({a="b"} | unwrap [5m])', /expected a label name/],
    ['{a="b"} | logfmt --nope', /unexpected "-"/],
    ['{a="b"} | json --strict', /unexpected "--strict"/],
    ['{a="b"} | line_format', /expected a template string/],
    ['{a="b"} | label_format a', /unexpected end of query/],
    ['{a="b"} | x =~ 5', /expected a string, number, duration or byte size/],
    ['{a="b"} | x > "5"', /expected a string, number, duration or byte size/],
    ['{a="b"} | x > ip("1.2.3.4")', /unexpected "ip"/],
    ['{a="b"} | (x="1"', /unexpected end of query/],
    ['{a="b"} |= "x" or', /unexpected end of query/],
    ['{a="b"} |= 5', /expected a string/],
    ['sum(rate({a="b"}[5m])) / on (x) group_left (sum(rate({c="d"}[5m])))', /unexpected "sum" at \d+ \(expected a label name\)/],
    ['vector(1) @ 100', /unexpected character "@"/],
    ['vector(0x10)', /only decimal numbers/],
    ['vector(09)', /octal/],
    ['vector(1e)', /exponent has no digits/],
    ['vector(1_000)', /unexpected "_000"/],
    ['vector(5m)', /unexpected "5m"/],
    ['vector(-1)', /expected a number/],
    ['1 -0', /unexpected "-0"/],
    ['-rate({a="b"}[5m])', /unexpected "-"/],
    ['((((', /unexpected end of query/],
    ['(vector(1)', /unexpected end of query/],
    ['vector(1))', /unexpected "\)"/],
  ];
  for (const [query, message] of invalid) {
    it(`refuses ${JSON.stringify(query)}`, () => {
      assert.throws(
        () => parseLogql(query),
        (err: unknown) => {
          assert.ok(err instanceof LogqlError, `not a LogqlError: ${String(err)}`);
          assert.equal(err.code, 'ERR_LOGQL_PARSE');
          assert.match(err.message, message);
          assert.ok(err.position >= 0 && err.position <= query.length, `position ${err.position}`);
          return true;
        },
      );
    });
  }

  it('reports the offset of the offending token', () => {
    assert.throws(() => parseLogql('{app="a", env="b"}}'), { code: 'ERR_LOGQL_PARSE', position: 18 });
    assert.throws(() => parseLogql('{app="a"} |= "x" |= `oops'), { code: 'ERR_LOGQL_PARSE', position: 20 });
  });
});

describe('parseLogql: limits', () => {
  const tooLarge: Array<[string, string, LogqlLimits | undefined, RegExp]> = [
    ['longer than 64 KiB', `{a="${'x'.repeat(64 * 1024)}"}`, undefined, /longer than 65536 bytes/],
    ['longer than maxLength', '{app="abcdefgh"}', { maxLength: 10 }, /longer than 10 bytes/],
    ['longer than maxLength in UTF-8 bytes only', '{a="ééééé"}', { maxLength: 12 }, /longer than 12 bytes/],
    ['nested parentheses', `${'('.repeat(100)}vector(1)${')'.repeat(100)}`, undefined, /deeper than 64/],
    ['nested label filters', `{a="b"} | ${'('.repeat(100)}x="1"${')'.repeat(100)}`, undefined, /deeper than 64/],
    ['nested aggregations', `${'sum('.repeat(100)}vector(1)${')'.repeat(100)}`, undefined, /deeper than 64/],
    ['a long operator chain', Array(100).fill('vector(1)').join(' + '), undefined, /deeper than 64/],
    ['a long label filter chain', `{a="b"} | ${Array(100).fill('x="1"').join(' or ')}`, undefined, /deeper than 64/],
    ['too many selectors', Array(257).fill('count_over_time({a="b"}[5m])').join(' or '), { maxDepth: 1000 }, /more than 256 stream selectors/],
    ['a long comma chain', `{a="b"} | ${Array(70).fill('x="1"').join(', ')}`, undefined, /deeper than 64/],
    ['a long ^ chain', Array(70).fill('vector(1)').join(' ^ '), undefined, /deeper than 64/],
    ['more selectors than maxSelectors', 'rate({a="1"}[1m]) / rate({a="2"}[1m]) / rate({a="3"}[1m])', { maxSelectors: 2 }, /more than 2 stream selectors/],
    ['deeper than maxDepth', 'sum(sum(sum(vector(1))))', { maxDepth: 3 }, /deeper than 3/],
  ];
  for (const [name, query, limits, message] of tooLarge) {
    it(`refuses a query ${name} with ERR_LOGQL_TOO_LARGE`, () => {
      assert.throws(() => parseLogql(query, limits), (err: unknown) => {
        assert.ok(err instanceof LogqlError);
        assert.equal(err.code, 'ERR_LOGQL_TOO_LARGE');
        assert.match(err.message, message);
        return true;
      });
    });
  }

  it('accepts what fits exactly', () => {
    assert.equal(parseLogql('{app="abcdefgh"}', { maxLength: 16 }).type, 'log');
    assert.equal(parseLogql('sum(sum(sum(vector(1))))', { maxDepth: 7 }).type, 'vector_agg');
    assert.equal(parseLogql('rate({a="1"}[1m]) / rate({a="2"}[1m])', { maxSelectors: 2 }).type, 'binary');
    assert.equal(parseLogql(Array(60).fill('vector(1)').join(' + ')).type, 'binary');
    assert.equal(parseLogql(Array(60).fill('vector(1)').join(' ^ ')).type, 'binary');
    assert.equal(parseLogql(`{a="b"} | ${Array(60).fill('x="1"').join(', ')}`).type, 'log');
  });

  it('caps maxDepth where the recursive walks are safe', () => {
    assert.throws(() => parseLogql('{a="b"}', { maxDepth: 1001 }), RangeError);
  });

  for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    it(`rejects the limit value ${bad} as a programming error`, () => {
      assert.throws(() => parseLogql('{a="b"}', { maxDepth: bad }), RangeError);
      assert.throws(() => parseLogql('{a="b"}', { maxLength: bad }), RangeError);
      assert.throws(() => parseLogql('{a="b"}', { maxSelectors: bad }), RangeError);
    });
  }

  it('refuses a non-string query', () => {
    assert.throws(() => parseLogql(42 as unknown as string), { code: 'ERR_LOGQL_PARSE' });
  });
});

describe('serializeLogql: hand-built trees', () => {
  const base = (): LogqlAst => parseLogql('count_over_time({a="b"} | x > 5 [5m] offset 1h)');
  const tamper: Array<[string, (ast: LogqlAst) => void]> = [
    ['a label name with syntax in it', (ast) => {
      if (ast.type === 'range_agg') ast.range.matchers[0]!.name = 'a="x"} or {b';
    }],
    ['a keyword as label name', (ast) => {
      if (ast.type === 'range_agg') ast.range.matchers[0]!.name = 'or';
    }],
    ['a range with syntax in it', (ast) => {
      if (ast.type === 'range_agg') ast.range.range = '5m]) or rate({x="y"}[5m';
    }],
    ['an offset that is not a duration', (ast) => {
      if (ast.type === 'range_agg') ast.range.offset = '1h) + vector(1';
    }],
    ['a number that is not a number', (ast) => {
      if (ast.type === 'range_agg' && ast.range.pipeline[0]?.type === 'label_filter') {
        const f = ast.range.pipeline[0].filter;
        if (f.type === 'number') f.value.text = '5 or {x="y"}';
      }
    }],
    ['an empty selector', (ast) => {
      if (ast.type === 'range_agg') ast.range.matchers.length = 0;
    }],
    ['an unknown operator', (ast) => {
      if (ast.type === 'range_agg') (ast.range.matchers[0] as { op: string }).op = '==';
    }],
  ];
  for (const [name, change] of tamper) {
    it(`refuses to write ${name}`, () => {
      const ast = base();
      change(ast);
      assert.throws(() => serializeLogql(ast), { code: 'ERR_LOGQL_PARSE', message: /cannot serialise/ });
    });
  }
});
