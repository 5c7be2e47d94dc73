import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { LogqlError, enforceLogql, enforceSelector, type EnforcedLabels } from '../../src/logql/index.ts';
import { createEnforceMemo, MEMO_MAX_QUERY_CHARS } from '../../src/logql/enforce-memo.ts';

const corpus = readFileSync(new URL('../fixtures/logql-corpus.txt', import.meta.url), 'utf8')
  .split('\n')
  .filter((line) => line.trim() !== '' && !line.startsWith('#'));

const STAGING: EnforcedLabels = new Map([['env', ['staging']]]);
const MULTI: EnforcedLabels = new Map([
  ['env', ['a.b', 'c|d']],
  ['team', ['x"y']],
]);

/** What a call throws, as its LogqlError code, or the value it returns. */
function outcome(run: () => string): string {
  try {
    return `ok ${run()}`;
  } catch (error) {
    assert.ok(error instanceof LogqlError, `a LogqlError, not ${String(error)}`);
    return `error ${error.code}`;
  }
}

describe('createEnforceMemo', () => {
  it('answers every corpus query exactly as enforceLogql does, computed and then remembered', () => {
    const memo = createEnforceMemo();
    for (const enforce of [STAGING, MULTI]) {
      for (const query of corpus) {
        const direct = outcome(() => enforceLogql(query, enforce).query);
        assert.equal(outcome(() => memo.logql(query, enforce)), direct, query);
        assert.equal(outcome(() => memo.logql(query, enforce)), direct, `${query} (second call)`);
      }
    }
  });

  it('answers selectors exactly as enforceSelector does', () => {
    const memo = createEnforceMemo();
    for (const text of ['{app="api"}', '{app=~"a|b", env!="prod"}', '{app="api"} |= "x"', 'sum(rate({a="b"}[5m]))']) {
      const direct = outcome(() => enforceSelector(text, STAGING));
      assert.equal(outcome(() => memo.selector(text, STAGING)), direct, text);
      assert.equal(outcome(() => memo.selector(text, STAGING)), direct, `${text} (second call)`);
    }
  });

  it('never answers one label set with another set’s entry', () => {
    const memo = createEnforceMemo();
    const query = 'sum(count_over_time({app="api"} |= "error" [5m]))';
    // Values that a naive joined key would confuse: a comma, a separator-like control character, a newline.
    const sets: EnforcedLabels[] = [
      new Map([['env', ['a', 'b']]]),
      new Map([['env', ['a,b']]]),
      new Map([['env', ['a\u0001b']]]),
      new Map([['env', ['a\nb']]]),
      new Map([['env', ['a']], ['team', ['b']]]),
      new Map([['team', ['b']], ['env', ['a']]]),
      new Map([['envx', ['a']]]),
    ];
    for (let round = 0; round < 2; round++) {
      for (const enforce of sets) {
        assert.equal(memo.logql(query, enforce), enforceLogql(query, enforce).query, JSON.stringify([...enforce]));
      }
    }
  });

  it('keeps query and selector answers apart: a query the selector form refuses stays refused', () => {
    const memo = createEnforceMemo();
    const text = '{app="api"} |= "x"';
    assert.match(memo.logql(text, STAGING), /env="staging"/);
    assert.throws(() => memo.selector(text, STAGING), (error: unknown) => error instanceof LogqlError && error.code === 'ERR_LOGQL_PARSE');
  });

  it('remembers no refusal: a bad query throws the same code every time and holds no entry', () => {
    const memo = createEnforceMemo();
    for (let i = 0; i < 3; i++) {
      assert.throws(() => memo.logql('{app="api"', STAGING), (error: unknown) => error instanceof LogqlError && error.code === 'ERR_LOGQL_PARSE');
      assert.throws(() => memo.logql('{app="api"}', new Map([['env', ['']]])), (error: unknown) => error instanceof LogqlError && error.code === 'ERR_LOGQL_ENFORCE');
    }
    assert.equal(memo.size(), 0);
  });

  it('is bounded: at most two generations of entries, and still exact after many distinct queries', () => {
    const memo = createEnforceMemo(4);
    for (let i = 0; i < 100; i++) {
      const query = `{app="a${i}"}`;
      assert.equal(memo.logql(query, STAGING), enforceLogql(query, STAGING).query);
      assert.ok(memo.size() <= 8, `size ${memo.size()} after ${i + 1} queries`);
    }
    // An entry from the old generation is still answered (and promoted), a dropped one recomputed.
    for (const i of [99, 98, 97, 96, 95, 0]) {
      assert.equal(memo.logql(`{app="a${i}"}`, STAGING), enforceLogql(`{app="a${i}"}`, STAGING).query);
    }
  });

  it(`does not remember queries over ${MEMO_MAX_QUERY_CHARS} characters`, () => {
    const memo = createEnforceMemo();
    const long = `{app="${'x'.repeat(MEMO_MAX_QUERY_CHARS)}"}`;
    assert.equal(memo.logql(long, STAGING), enforceLogql(long, STAGING).query);
    assert.equal(memo.size(), 0);
    memo.logql('{app="short"}', STAGING);
    assert.equal(memo.size(), 1);
  });
});
