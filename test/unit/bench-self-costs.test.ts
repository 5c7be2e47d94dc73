import assert from 'node:assert/strict';
import { test } from 'node:test';
import { selfCosts } from '../../bench/lib/instructions.ts';

// A dump in callgrind's format (valgrind's docs, "Callgrind Format Specification"), with what a real one
// from `--instructions` has: compressed names (full at the first use, by id after, first use possibly
// in a `cfn=`), relative positions, file switches inside a function, a call's inclusive cost line, and a
// function that appears in two blocks.
const dump = `# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  node src/cli/main.ts run
part: 2

positions: line
events: Ir

ob=(1) /usr/bin/node
fl=(1) ???
fn=(1) uv_run
0 100
cfn=(2) uv__io_poll
calls=3 0
0 9000
+2 20

fn=(2)
0 400
cob=(2) /usr/lib/x86_64-linux-gnu/libc.so.6
cfl=(2) ???
cfn=(3) epoll_wait
calls=3 0
0 60
fi=(3) /usr/include/some-inline.h
-1 40
fe=(1)
cfn=(4) 0x000000000a1b2c3d
calls=1 0
* 8500

ob=(2)
fl=(2)
fn=(3)
0 60

ob=(1)
fl=(1)
fn=(4)
0 8000
cfn=(5) BN_mod_exp_mont
calls=1 0
0 500

fn=(5)
0 500

fn=(1)
* 5

totals: 9125
`;

test('selfCosts: each function owns its cost lines, not the inclusive cost after calls=', () => {
  const costs = selfCosts(dump);
  assert.deepEqual(Object.fromEntries(costs), {
    uv_run: 125,
    uv__io_poll: 440,
    epoll_wait: 60,
    '0x000000000a1b2c3d': 8000,
    BN_mod_exp_mont: 500,
  });
});

test('selfCosts: the values add up to the dump total', () => {
  const total = [...selfCosts(dump).values()].reduce((a, b) => a + b, 0);
  assert.equal(total, Number(/^totals: (\d+)$/m.exec(dump)![1]));
});
