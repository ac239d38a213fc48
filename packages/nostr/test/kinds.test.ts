import { describe, expect, it } from 'vitest';
import { isAddressable, isEphemeral, isReplaceable, kindClass, reason, type KindClass } from '../src/index.ts';

describe('kindClass', () => {
  const cases: [number, KindClass][] = [
    [0, 'replaceable'],
    [1, 'regular'],
    [2, 'regular'],
    [3, 'replaceable'],
    [4, 'regular'],
    [44, 'regular'],
    [45, 'regular'],
    [999, 'regular'],
    [1000, 'regular'],
    [9999, 'regular'],
    [10000, 'replaceable'],
    [19999, 'replaceable'],
    [20000, 'ephemeral'],
    [29999, 'ephemeral'],
    [30000, 'addressable'],
    [39999, 'addressable'],
    [40000, 'regular'],
    [65535, 'regular'],
  ];
  it.each(cases)('kind %i is %s', (kind, cls) => {
    expect(kindClass(kind)).toBe(cls);
  });

  it('predicates agree with kindClass at boundaries', () => {
    for (const [kind, cls] of cases) {
      expect(isReplaceable(kind)).toBe(cls === 'replaceable');
      expect(isEphemeral(kind)).toBe(cls === 'ephemeral');
      expect(isAddressable(kind)).toBe(cls === 'addressable');
    }
  });
});

describe('reason', () => {
  it('joins prefix and message with ": "', () => {
    expect(reason('invalid', 'bad id')).toBe('invalid: bad id');
    expect(reason('auth-required', 'log in')).toBe('auth-required: log in');
    expect(reason('rate-limited', '')).toBe('rate-limited: ');
  });
});
