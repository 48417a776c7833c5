import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { API_ERRORS, ERROR_STATUS, GATEWAY_ERRORS, RUNTIME_FAILURES, connectCodeOfStatus, isGatewayErrorCode, statusOf } from './error-codes.js';

describe('error registry', () => {
  it('keeps ERROR_STATUS (public API) equal to the control-plane statuses', () => {
    assert.deepEqual(Object.keys(ERROR_STATUS), Object.keys(API_ERRORS));
    for (const [code, status] of Object.entries(ERROR_STATUS)) assert.equal(status, statusOf(code as keyof typeof ERROR_STATUS));
  });

  it("maps each gateway code to the Connect code its status gives, but for the gateway's own overrides", () => {
    for (const [code, spec] of Object.entries(GATEWAY_ERRORS)) {
      // Prime's SDK reads `not_found` as "sandbox gone"; a sandbox not running yet is worth a retry.
      const expected = code === 'sandbox_not_found' ? 'not_found' : spec.status === 409 ? 'unavailable' : connectCodeOfStatus(spec.status);
      assert.equal(spec.connect, expected, code);
    }
  });

  it('maps driver failures to registered gateway codes', () => {
    for (const spec of Object.values(RUNTIME_FAILURES)) assert.ok(isGatewayErrorCode(spec.gateway));
    assert.equal(RUNTIME_FAILURES.NOT_FOUND.gateway, 'sandbox_not_found');
    assert.equal(RUNTIME_FAILURES.IMAGE_PULL_FAILED.startErrorType, 'IMAGE_PULL_FAILED');
    assert.equal(isGatewayErrorCode('toString'), false);
  });
});
