/** The argument checks the payment tables' modules share (validation before any write). */
import { isHex64 } from '@paidrelay/nostr';

export function checkHex64(value: unknown, what: string): asserts value is string {
  if (!isHex64(value)) throw new TypeError(`${what} must be 64 lowercase hex characters`);
}

/** A safe integer >= min (amounts, times, limits). */
export function checkInt(value: unknown, what: string, min = 0): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`${what} must be an integer >= ${min}, got ${String(value)}`);
  }
}
