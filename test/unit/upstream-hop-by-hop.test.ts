import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { connectionTokens, droppedByConnection, isHopByHop } from '../../src/upstream/hop-by-hop.ts';

describe('isHopByHop', () => {
  const cases: Array<[string, boolean]> = [
    ['connection', true],
    ['Connection', true],
    ['keep-alive', true],
    ['Keep-Alive', true],
    ['proxy-connection', true],
    ['te', true],
    ['TE', true],
    ['trailer', true],
    ['transfer-encoding', true],
    ['Transfer-Encoding', true],
    ['upgrade', true],
    ['proxy-authenticate', true],
    ['proxy-authorization', true],
    ['PROXY-AUTHORIZATION', true],
    // same lengths as hop-by-hop names, but end-to-end
    ['set-cookie', false],
    ['user-agent', false],
    ['x-forwarded', false],
    ['tk', false],
    ['trailers', false],
    ['content-encoding', false],
    ['content-length', false],
    ['authorization', false],
    ['host', false],
    ['', false],
    ['x-upgrade', false],
  ];
  for (const [name, expected] of cases) {
    test(`${JSON.stringify(name)} -> ${expected}`, () => {
      assert.equal(isHopByHop(name), expected);
    });
  }
});

describe('connectionTokens', () => {
  const cases: Array<[string | string[] | undefined, string[]]> = [
    [undefined, []],
    ['', []],
    ['close', ['close']],
    ['keep-alive, X-Trace', ['keep-alive', 'x-trace']],
    ['  Upgrade ,, x-a,', ['upgrade', 'x-a']],
    [['X-One', 'x-two, X-Three'], ['x-one', 'x-two', 'x-three']],
    ['x-dup, X-DUP', ['x-dup']],
  ];
  for (const [value, expected] of cases) {
    test(`${JSON.stringify(value)} -> ${JSON.stringify(expected)}`, () => {
      assert.deepEqual([...connectionTokens(value)], expected);
    });
  }
});

describe('droppedByConnection', () => {
  test('is undefined when Connection names nothing beyond the hop-by-hop fields', () => {
    for (const value of [undefined, 'keep-alive', 'close']) assert.equal(droppedByConnection(value), undefined);
  });
  test('parses any other value like connectionTokens', () => {
    assert.deepEqual([...droppedByConnection('keep-alive, X-Trace')!], ['keep-alive', 'x-trace']);
    assert.deepEqual([...droppedByConnection(['close', 'x-a'])!], ['close', 'x-a']);
  });
});
