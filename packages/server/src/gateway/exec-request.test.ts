import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseExecBody } from './exec-request.js';
import { GatewayError } from '../errors/gateway-error.js';
import { topLevelRawValues } from './raw-json.js';

const parse = (raw: string, max = 3600): ReturnType<typeof parseExecBody> => parseExecBody({ raw, value: JSON.parse(raw) as unknown }, max);
const status = (fn: () => unknown): number | undefined => {
  try {
    fn();
    return undefined;
  } catch (error) {
    return error instanceof GatewayError ? error.status : -1;
  }
};

describe('topLevelRawValues', () => {
  it('returns the source text of top-level members only', () => {
    assert.deepEqual(topLevelRawValues('{"timeout": 10.0}', 'timeout'), ['10.0']);
    assert.deepEqual(topLevelRawValues('{"a":{"timeout":1.5},"timeout":10,"timeout" :  2e3 }', 'timeout'), ['10', '2e3']);
    assert.deepEqual(topLevelRawValues('{"command":"\\"timeout\\": 1.5","timeout":null}', 'timeout'), ['null']);
    assert.deepEqual(topLevelRawValues('{"\\u0074imeout":1.0}', 'timeout'), ['1.0']);
    assert.deepEqual(topLevelRawValues('[1]', 'timeout'), []);
  });

  it('agrees with JSON.parse on the last value for any object', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true })), (obj, timeout) => {
        const text = JSON.stringify({ ...obj, timeout });
        const found = topLevelRawValues(text, 'timeout');
        assert.equal(JSON.parse(found[found.length - 1] as string), (JSON.parse(text) as { timeout: unknown }).timeout);
      }),
    );
  });
});

describe('parseExecBody', () => {
  it('accepts what the Prime SDK sends', () => {
    assert.deepEqual(parse('{"command":"ls","working_dir":null,"env":{"A":"b"},"sandbox_id":"x","timeout":300,"user":"root"}'), {
      command: 'ls',
      workingDir: undefined,
      env: { A: 'b' },
      timeoutSeconds: 300,
      user: 'root',
    });
    assert.equal(parse('{"command":"ls"}').timeoutSeconds, 300);
    assert.equal(parse('{"command":"ls","timeout":3600}').timeoutSeconds, 3600);
  });

  it('refuses non-integer and out-of-range timeouts with 422', () => {
    for (const t of ['10.0', '10.5', '1e1', '1E1', '-0', '"10"', 'true', '0', '-5', '3601', '[1]']) {
      assert.equal(status(() => parse(`{"command":"ls","timeout":${t}}`)), 422, t);
    }
    assert.equal(status(() => parse('{"command":"ls","timeout":10.0,"timeout":10}')), 422, 'a float anywhere among duplicates');
  });

  it('refuses malformed fields with 422', () => {
    for (const body of ['{}', '{"command":null}', '{"command":"a\\u0000b"}', '{"command":"ls","env":[]}', '{"command":"ls","env":{"A=B":"c"}}', '{"command":"ls","working_dir":"tmp"}', '{"command":"ls","user":"a;b"}']) {
      assert.equal(status(() => parse(body)), 422, body);
    }
    assert.equal(status(() => parseExecBody(undefined, 10)), 422);
  });
});
