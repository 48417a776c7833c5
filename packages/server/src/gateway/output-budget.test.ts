import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { BoundedOutput } from './bounded-output.js';
import { OutputBudget } from './output-budget.js';

/** Feeds `chunks` through a BoundedOutput and waits until they have been taken. */
async function fed(chunks: Buffer[], maxBytes: number, budget?: ReturnType<OutputBudget['forUser']>): Promise<BoundedOutput> {
  const stream = new PassThrough();
  const output = new BoundedOutput(stream, maxBytes, budget);
  for (const chunk of chunks) stream.write(chunk);
  stream.end();
  await new Promise((resolve) => setImmediate(resolve));
  return output;
}

describe('OutputBudget', () => {
  it("bounds the total and each user's share, and gives bytes back", () => {
    const budget = new OutputBudget(100, 60);
    const a = budget.forUser('a');
    const b = budget.forUser('b');
    assert.equal(a.reserve(50), 50);
    assert.equal(a.reserve(50), 10); // a's share is 60
    assert.equal(b.reserve(50), 40); // 100 in all
    assert.equal(budget.inUse, 100);
    a.release(60);
    assert.equal(b.reserve(30), 20); // b's share is 60
    b.release(60);
    assert.equal(budget.inUse, 0);
  });

  it('truncates an output once its budget is spent and says why', async () => {
    const budget = new OutputBudget(1024 * 1024, 1024 * 1024);
    const other = budget.forUser('b');
    other.reserve(1024 * 1024 - 10);
    const output = await fed([Buffer.from('0123456789abcdef')], 1000, budget.forUser('a'));
    assert.match(output.text(), /^0123456789\n\[corral: output truncated: 6 more bytes not shown \(the server's exec output memory/);
    output.dispose();
    assert.equal(budget.inUse, 1024 * 1024 - 10);
  });
});

describe('BoundedOutput.jsonSlices', () => {
  it('is the JSON escape of text(), for any bytes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), fc.integer({ min: 1, max: 2000 }), fc.integer({ min: 1, max: 50 }), async (arrays, max, slice) => {
        const output = await fed(arrays.map((a) => Buffer.from(a)), max);
        assert.equal([...output.jsonSlices(slice)].join(''), JSON.stringify(output.text()).slice(1, -1));
      }),
    );
  });
});
