import { committedTarget, expirationOf, isProtected, powDifficulty, reason, type NostrEvent } from '@paidrelay/nostr';
import type { Config } from '@paidrelay/config';

/** What a write policy may look at besides the event itself. */
export type WriteContext = {
  now: number;
  /** Pubkeys this connection has proven with NIP-42 AUTH. */
  authed: ReadonlySet<string>;
  ip: string;
};

/** Accept (undefined) or refuse with a NIP-01 reason. Policies run in order; the first refusal wins. */
export type WritePolicy = (ev: NostrEvent, ctx: WriteContext) => string | undefined;

export function createdAtWindow(lower: number, upper: number): WritePolicy {
  return (ev, { now }) => {
    if (upper >= 0 && ev.created_at > now + upper) {
      return reason('invalid', `created_at is more than ${upper} seconds in the future`);
    }
    if (lower > 0 && ev.created_at < now - lower) {
      return reason('invalid', `created_at is more than ${lower} seconds in the past`);
    }
    return undefined;
  };
}

/** NIP-40: an event that has already expired is refused on arrival. */
export const notExpired: WritePolicy = (ev, { now }) => {
  const exp = expirationOf(ev);
  return exp !== undefined && exp <= now ? reason('invalid', 'event has expired') : undefined;
};

/** NIP-42: AUTH events travel in AUTH messages and are never stored or broadcast. */
export const noAuthEvents: WritePolicy = (ev) =>
  ev.kind === 22242 ? reason('invalid', 'kind 22242 events are sent with AUTH, not EVENT') : undefined;

/** NIP-70: a protected event is accepted only from its authenticated author. */
export const protectedEvents: WritePolicy = (ev, { authed }) => {
  if (!isProtected(ev) || authed.has(ev.pubkey)) return undefined;
  return authed.size === 0
    ? reason('auth-required', 'this event may only be published by its author')
    : reason('restricted', 'this event may only be published by its author');
};

/** NIP-13: at least `min` leading zero bits, and the committed target (if any) must reach it too. */
export function minimumPow(min: number): WritePolicy {
  return (ev) => {
    if (min <= 0) return undefined;
    const got = powDifficulty(ev.id);
    if (got < min) return reason('pow', `difficulty ${got} is less than ${min}`);
    const target = committedTarget(ev);
    if (target !== undefined && target < min) return reason('pow', `committed target ${target} is less than ${min}`);
    return undefined;
  };
}

export function authRequired(required: boolean): WritePolicy {
  return (_ev, { authed }) =>
    required && authed.size === 0 ? reason('auth-required', 'authenticate with NIP-42 AUTH to publish') : undefined;
}

/** The relay's write policies, in order. Later features append theirs (bans, payment gate). */
export function defaultPolicies(config: Config): WritePolicy[] {
  return [
    authRequired(config.AUTH_REQUIRED),
    noAuthEvents,
    createdAtWindow(config.CREATED_AT_LOWER_LIMIT, config.CREATED_AT_UPPER_LIMIT),
    notExpired,
    protectedEvents,
    minimumPow(config.MIN_POW_DIFFICULTY),
  ];
}

export function runPolicies(policies: WritePolicy[], ev: NostrEvent, ctx: WriteContext): string | undefined {
  for (const p of policies) {
    const r = p(ev, ctx);
    if (r !== undefined) return r;
  }
  return undefined;
}
