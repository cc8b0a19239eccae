// The JS ordering buffer against the cases the Python one also passes (tests/vectors/ordering.json), plus what
// only the JS side has (restoring persisted cursors).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { OrderingBuffer } from '../../core/web/js/ordering.js';

const { cases } = JSON.parse(readFileSync(new URL('../vectors/ordering.json', import.meta.url), 'utf8'));

for (const c of cases) {
  test(`shared vector: ${c.name}`, () => {
    const b = new OrderingBuffer(c.gap_timeout, c.max_buffered ?? 10000);
    c.steps.forEach((step, i) => {
      let got;
      switch (step.op) {
        case 'offer': {
          const o = b.offer(step.conv, step.seq, step.item ?? step.seq, step.now);
          got = { ready: o.ready, duplicate: o.duplicate, needs_sync: o.needsSync };
          break;
        }
        case 'set_cursor':
          got = b.setCursor(step.conv, step.seq);
          break;
        case 'cursor':
          got = b.cursor(step.conv);
          break;
        case 'cursors':
          got = b.cursors();
          break;
        case 'gaps':
          got = b.gaps(step.now);
          break;
        case 'mark_syncing':
          got = b.markSyncing(step.conv, step.now) ?? null;
          break;
        default:
          assert.fail(`unknown op ${step.op} in step ${i}`);
      }
      assert.deepEqual(got, step.expect ?? null, `step ${i}: ${JSON.stringify(step)}`);
    });
  });
}

test('restore keeps valid persisted cursors only and never moves one back', () => {
  const b = new OrderingBuffer(1000);
  b.setCursor('e', 9);
  b.restore({ d: 3, e: 2, bad: -1, worse: 'x', frac: 1.5 });
  assert.deepEqual(b.cursors(), { d: 3, e: 9 });
  b.restore(null);
  assert.deepEqual(b.cursors(), { d: 3, e: 9 });
});
