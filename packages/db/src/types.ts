/**
 * Local copies of the core protocol types. They are structurally identical to the ones in
 * `@paidrelay/nostr`, so values flow between the packages without conversion; this package does
 * not import the core so that it can be built and tested on its own.
 */
export type NostrEvent = {
  id: string;
  pubkey: string;
  created_at: number;
  kind: number;
  tags: string[][];
  content: string;
  sig: string;
};

/** A NIP-01 filter, already validated by the caller (lowercase hex, limit set and clamped). */
export type Filter = {
  ids?: string[];
  authors?: string[];
  kinds?: number[];
  since?: number;
  until?: number;
  limit?: number;
  [tag: `#${string}`]: string[] | undefined;
};

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

export type KindClass = 'regular' | 'replaceable' | 'ephemeral' | 'addressable';
