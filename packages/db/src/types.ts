import type { NostrEvent, Filter, KindClass } from '@paidrelay/nostr';

/** The core's types: filters arrive already validated (lowercase hex, limit set and clamped). */
export type { NostrEvent, Filter, KindClass };

/** One event to store: the parsed event and its JSON exactly as the relay will send it. */
export type StoreItem = { event: NostrEvent; raw: string };

/**
 * What happened to one event of a batch. `message` is the human-readable part of a NIP-01 `OK`
 * reason, without the machine-readable prefix: the relay chooses the prefix
 * (`duplicate:` for duplicates; the others are refusals).
 */
export type StoreOutcome =
  | { status: 'stored' }
  | { status: 'duplicate'; message: string }
  | { status: 'deleted'; message: string }
  | { status: 'stale'; message: string };
