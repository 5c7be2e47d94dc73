/**
 * canonicalize against RFC 8785: the number vectors of Appendix B, the member ordering example of §3.2.3,
 * string escaping (§3.2.2.2), and refusal of values that are not JSON data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalize } from '../../src/audit/canonical.ts';

const NUMBERS: readonly [string, number, string][] = [
  ['zero', 0, '0'],
  ['minus zero', -0, '0'],
  ['min positive', 5e-324, '5e-324'],
  ['min negative', -5e-324, '-5e-324'],
  ['max', 1.7976931348623157e308, '1.7976931348623157e+308'],
  ['2^53', 9007199254740992, '9007199254740992'],
  ['large integer', 295147905179352830000, '295147905179352830000'],
  ['just below 1e23', 9.999999999999997e22, '9.999999999999997e+22'],
  ['1e23', 1e23, '1e+23'],
  ['1e21 switches to exponent', 1e21, '1e+21'],
  ['0.000001 stays fixed', 0.000001, '0.000001'],
  ['below 1e-6 switches to exponent', 9.999999999999997e-7, '9.999999999999997e-7'],
  ['repeating fraction', 333333333.3333333, '333333333.3333333'],
  ['1.0 is 1', 1.0, '1'],
];

for (const [name, value, want] of NUMBERS) {
  test(`number: ${name}`, () => assert.equal(canonicalize(value), want));
}

test('members sort by UTF-16 code units (RFC 8785 §3.2.3 example)', () => {
  const input = {
    '\u20ac': 'Euro Sign',
    '\r': 'Carriage Return',
    '\ufb33': 'Hebrew Letter Dalet With Dagesh',
    '1': 'One',
    '\ud83d\ude00': 'Emoji: Grinning Face',
    '\u0080': 'Control',
    '\u00f6': 'Latin Small Letter O With Diaeresis',
  };
  assert.equal(
    canonicalize(input),
    '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
      '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
  );
});

test('no whitespace, nested structures, undefined members skipped', () => {
  assert.equal(canonicalize({ b: [1, { d: true, c: null }], a: 'x', u: undefined }), '{"a":"x","b":[1,{"c":null,"d":true}]}');
});

test('strings escape as JSON.stringify does (§3.2.2.2)', () => {
  assert.equal(canonicalize('\u20ac$\u000f\nA\'B"\\/'), '"€$\\u000f\\nA\'B\\"\\\\/"');
});

test('equal data in another key order or spacing canonicalises identically', () => {
  const a = JSON.parse('{ "z": 1, "a": { "y": [1, 2.50], "b": "x" } }') as unknown;
  const b = JSON.parse('{"a":{"b":"x","y":[1,2.5]},"z":1.0}') as unknown;
  assert.equal(canonicalize(a), canonicalize(b));
});

test('an object whose members already come in order gives the text of the same data in any other order', () => {
  // Sorted flat records are written by JSON.stringify in one pass; any other order takes the member-by-member
  // writer. Both must produce the same text for every kind of member.
  const members: [string, unknown][] = [
    ['1', 'an index-like name (Object.keys lists these first, which is canonical only while they sort first)'],
    ['2', -0],
    ['@timestamp', '2025-01-01T00:00:00.000Z'],
    ['__proto__', 'an own member, as JSON.parse makes it'],
    ['a', 1e21],
    ['b', 5e-324],
    ['c', [true, false, null, 0.1, 'x\n\u0000"\\']],
    ['d', undefined],
    ['e', []],
    ['\u00f6', 'Zoë 🦊 \u2028'],
    ['\u20ac', 123456789.125],
    ['\ud83d\ude00', '\ufb33'],
  ];
  const build = (order: readonly [string, unknown][]) => {
    const o: Record<string, unknown> = JSON.parse('{}');
    // defineProperty: a plain assignment to '__proto__' would set the prototype instead.
    for (const [k, v] of order) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
    return o;
  };
  const sorted = build(members);
  assert.deepEqual(Object.keys(sorted), members.map(([k]) => k), 'the members are in canonical order to begin with');
  const reversed = build([...members].reverse());
  const text = canonicalize(sorted);
  assert.equal(text, canonicalize(reversed));
  assert.equal(text, canonicalize(JSON.parse(text)), 'stored text read back gives itself');
  assert.ok(!text.includes('"d"') && text.includes('"2":0,') && text.includes('"a":1e+21,'), text);
});

for (const [name, value] of [
  ['a lone surrogate in an ordered record', { a: 'x', b: '\ud800' }],
  ['undefined inside an array of an ordered record', { a: 1, b: [1, undefined] }],
  ['a non-finite number in an ordered record', { a: 1, b: -Infinity }],
  ['a bigint inside an array of an ordered record', { a: [1n] }],
] as const) {
  test(`refuses ${name}`, () => {
    assert.throws(() => canonicalize(value), { name: 'AuditError', code: 'ERR_AUDIT_CANONICAL_INVALID' });
  });
}

const REFUSED: readonly [string, unknown][] = [
  ['NaN', NaN],
  ['Infinity', { x: Infinity }],
  ['bigint', 1n],
  ['function', { f: () => 1 }],
  ['undefined in an array', [1, undefined]],
  ['lone surrogate in a value', '\ud800'],
  ['lone surrogate in a name', { '\udc00': 1 }],
  ['a Date (not plain data)', new Date(0)],
  ['a Map', new Map()],
  ['nesting deeper than 64', JSON.parse('['.repeat(70) + ']'.repeat(70)) as unknown],
];

for (const [name, value] of REFUSED) {
  test(`refuses ${name}`, () => {
    assert.throws(() => canonicalize(value), { name: 'AuditError', code: 'ERR_AUDIT_CANONICAL_INVALID' });
  });
}
