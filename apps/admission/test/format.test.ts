import { describe, expect, it } from 'vitest';
import { formatAllowanceLeft, formatBytes, formatMultiplier } from '../src/web/format.ts';

describe('the pay page says a sender’s price and allowance in words', () => {
  it('bytes in 1024s, as the allowance counts them', () => {
    expect(formatBytes(0)).toBe('0 bytes');
    expect(formatBytes(1)).toBe('1 byte');
    expect(formatBytes(1023)).toBe('1,023 bytes');
    expect(formatBytes(40 * 1024)).toBe('40 KB');
    expect(formatBytes(256 * 1024 + 512)).toBe('256.5 KB');
    expect(formatBytes(1.5 * 1024 * 1024)).toBe('1.5 MB');
    expect(formatBytes(16 * 1024 ** 3)).toBe('16 GB');
  });

  it('the multiplier with its reason; the base price at 1x', () => {
    expect(formatMultiplier(4, '350 events from you in the last hour')).toBe('4x the base: 350 events from you in the last hour');
    expect(formatMultiplier(1024, '')).toBe('1,024x the base');
    expect(formatMultiplier(1, '')).toBe('the base price');
  });

  it('what is left of the daily allowance', () => {
    expect(formatAllowanceLeft({ events: 12, bytes: 40 * 1024 }, { events: 50, bytes: 256 * 1024 })).toBe(
      '12 of 50 events, 40 KB of 256 KB left today',
    );
    expect(formatAllowanceLeft({ events: 0, bytes: 0 }, { events: 1, bytes: 2048 })).toBe('0 of 1 event, 0 bytes of 2 KB left today');
  });
});
