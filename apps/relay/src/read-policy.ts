import type { Config } from '@paidrelay/config';
import type { KindRestriction, QueryFilter } from '@paidrelay/db';
import { nowSeconds, reason, type NostrEvent } from '@paidrelay/nostr';

/**
 * Read policies: what a reader may get, decided per REQ/COUNT filter (and, where a rule depends
 * on time, per live event). Plain functions in a list, like write policies; the relay core runs
 * them and knows none of them by name. The entry point (app.ts) builds the defaults from the
 * config and appends any that startRelay's caller hands in.
 */

/** What a read policy may look at besides the filter. */
export type ReadContext = {
  now: number;
  /** Pubkeys this connection has proven with NIP-42 AUTH (a snapshot: a subscription never widens). */
  authed: ReadonlySet<string>;
};

/** A filter as read policies see and return it: NIP-01 fields plus internal kind restrictions. */
export type ReadFilter = QueryFilter;

/**
 * - `undefined`: allow the filter as it is;
 * - a string: refuse the whole REQ/COUNT with this NIP-01 reason (`auth-required: `, `restricted: `);
 * - `{ filter }`: narrow. The core intersects it with the filter it gave, so a policy can never
 *   widen; `null` matches nothing (the filter is dropped). `deliver`, when set, must also hold
 *   for every live event sent to the subscription (for rules that change with time, such as a
 *   membership that ends); stored results are answered from the filter alone.
 */
export type ReadDecision = undefined | string | { filter: ReadFilter | null; deliver?: (ev: NostrEvent) => boolean };

/** What NIP-11 says of a policy (`read_policies.<name>`). */
export type ReadPolicyInfo = {
  name: string;
  info: Record<string, unknown>;
  /** Every read needs NIP-42 AUTH under this policy (NIP-11 `limitation.auth_required`). */
  everyReadNeedsAuth?: boolean;
};

export type ReadPolicy = ((filter: ReadFilter, ctx: ReadContext) => ReadDecision) & { nip11?: ReadPolicyInfo };

/** One filter after every policy: what to query and match live, and what each live event must pass. */
export type PolicedFilter = { filter: ReadFilter; deliver?: (ev: NostrEvent) => boolean };

export type PolicedRead = { ok: true; filters: PolicedFilter[] } | { ok: false; reason: string };

/** Runs the policies over each filter, in order; the first refusal refuses the whole request. */
export function applyReadPolicies(policies: readonly ReadPolicy[], filters: readonly ReadFilter[], ctx: ReadContext): PolicedRead {
  if (policies.length === 0) return { ok: true, filters: filters.map((filter) => ({ filter })) };
  const out: PolicedFilter[] = [];
  next: for (const original of filters) {
    let f: ReadFilter = original;
    const checks: ((ev: NostrEvent) => boolean)[] = [];
    for (const p of policies) {
      const d = p(f, ctx);
      if (d === undefined) continue;
      if (typeof d === 'string') return { ok: false, reason: d };
      const narrowed = d.filter === null ? null : intersect(f, d.filter);
      if (narrowed === null) continue next;
      f = narrowed;
      if (d.deliver) checks.push(d.deliver);
    }
    out.push({
      filter: f,
      deliver: checks.length === 0 ? undefined : checks.length === 1 ? checks[0] : (ev) => checks.every((c) => c(ev)),
    });
  }
  return { ok: true, filters: out };
}

function intersectList<T>(a: T[] | undefined, b: T[] | undefined): T[] | undefined {
  if (a === undefined) return b;
  if (b === undefined || a === b) return a;
  return a.filter((x) => b.includes(x));
}

/** The filter matching what both match (null: nothing). Limits take the smaller, restrictions add up. */
export function intersect(a: ReadFilter, b: ReadFilter): ReadFilter | null {
  if (a === b) return a;
  const out: ReadFilter = {};
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (key === 'since' || key === 'until' || key === 'limit' || key === 'restrict' || key === 'notAuthors') continue;
    const v = intersectList(a[key as 'ids'] as unknown[] | undefined, b[key as 'ids'] as unknown[] | undefined);
    if (v === undefined) continue;
    if (v.length === 0) return null;
    (out as Record<string, unknown>)[key] = v;
  }
  const since = Math.max(a.since ?? -Infinity, b.since ?? -Infinity);
  const until = Math.min(a.until ?? Infinity, b.until ?? Infinity);
  if (since > until) return null;
  if (since !== -Infinity) out.since = since;
  if (until !== Infinity) out.until = until;
  const limit = Math.min(a.limit ?? Infinity, b.limit ?? Infinity);
  if (limit !== Infinity) out.limit = limit;
  const restrict = [...(a.restrict ?? [])];
  for (const r of b.restrict ?? []) if (!restrict.includes(r)) restrict.push(r);
  if (restrict.length > 0) out.restrict = restrict;
  // Exclusions add up too (both sides' excluded authors stay excluded).
  if (a.notAuthors || b.notAuthors) out.notAuthors = [...new Set([...(a.notAuthors ?? []), ...(b.notAuthors ?? [])])];
  return out;
}

/** Live-side twin of the store's restriction condition (packages/db queryEvents). */
export function passesRestrictions(restrict: readonly KindRestriction[], ev: NostrEvent): boolean {
  for (const r of restrict) {
    if (r.kinds !== undefined && !r.kinds.includes(ev.kind)) continue;
    if (!isReader(ev, r.readers)) return false;
  }
  return true;
}

/** Authored by, or `p`-tagged (first value, as NIP-01 indexes tags) to, one of these pubkeys. */
function isReader(ev: NostrEvent, readers: readonly string[]): boolean {
  if (readers.length === 0) return false;
  if (readers.includes(ev.pubkey)) return true;
  for (const t of ev.tags) if (t.length > 1 && t[0] === 'p' && readers.includes(t[1])) return true;
  return false;
}

function withRestriction(f: ReadFilter, r: KindRestriction): ReadFilter {
  return { ...f, restrict: [...(f.restrict ?? []), r] };
}

function within(values: string[] | undefined, set: ReadonlySet<string>): boolean {
  return values?.every((v) => set.has(v)) === true;
}

/** The filter names only the reader's own events or events p-tagged to the reader. */
function onlyOwn(f: ReadFilter, authed: ReadonlySet<string>): boolean {
  return authed.size > 0 && (within(f.authors, authed) || within(f['#p'], authed));
}

// ---------------------------------------------------------------------------------------------
// The policies

/** AUTH_REQUIRED: nothing is read before NIP-42 AUTH. */
export function authRequiredReads(): ReadPolicy {
  const p: ReadPolicy = (_f, { authed }) =>
    authed.size === 0 ? reason('auth-required', 'authenticate with NIP-42 AUTH first') : undefined;
  p.nip11 = { name: 'auth_required', info: { kinds: 'all' }, everyReadNeedsAuth: true };
  return p;
}

/**
 * Private kinds (DMs, gift wraps): an event is served only to its author and the pubkeys of its
 * `p` tags, authenticated on this connection. A filter naming a private kind without AUTH is
 * refused (the client is asked to authenticate); a filter without kinds is narrowed instead, so
 * ordinary clients keep working. Authenticated, a filter is narrowed to what the reader may see.
 */
export function privateKinds(kinds: readonly number[]): ReadPolicy {
  const set = new Set(kinds);
  const all = [...set];
  const p: ReadPolicy = (f, { authed }) => {
    const hit = f.kinds === undefined ? all : f.kinds.filter((k) => set.has(k));
    if (hit.length === 0) return undefined;
    if (authed.size === 0) {
      if (f.kinds !== undefined) {
        return reason(
          'auth-required',
          `kinds ${hit.join(', ')} are private: only their author and recipients may read them, authenticate with NIP-42 AUTH`,
        );
      }
      return { filter: withRestriction(f, { kinds: all, readers: [] }) };
    }
    // Already within what the reader may see (a DM client's own query): nothing to add.
    if (f.kinds !== undefined && hit.length === f.kinds.length && onlyOwn(f, authed)) return undefined;
    return { filter: withRestriction(f, { kinds: hit, readers: [...authed] }) };
  };
  p.nip11 = { name: 'private_kinds', info: { kinds: all, readers: 'the author and the p-tagged pubkeys, authenticated with NIP-42' } };
  return p;
}

/** NIP-47 requests, responses and notifications. */
export const WALLET_TRAFFIC_KINDS: readonly number[] = [23194, 23195, 23196, 23197];

/**
 * NIP-47 wallet traffic goes only to filters that name the event by `authors` or `#p`, as
 * wallet services and clients subscribe (a filter with either can only match events of the
 * pubkeys it names); anyone else's filter is narrowed to leave these kinds out.
 */
export function walletTraffic(kinds: readonly number[] = WALLET_TRAFFIC_KINDS): ReadPolicy {
  const set = new Set(kinds);
  const all = [...set];
  const p: ReadPolicy = (f) => {
    if (f.authors !== undefined || f['#p'] !== undefined) return undefined;
    if (f.kinds === undefined) return { filter: withRestriction(f, { kinds: all, readers: [] }) };
    if (!f.kinds.some((k) => set.has(k))) return undefined;
    const rest = f.kinds.filter((k) => !set.has(k));
    return { filter: rest.length === 0 ? null : { ...f, kinds: rest } };
  };
  p.nip11 = { name: 'wallet_traffic', info: { kinds: all, readers: 'filters naming the event by authors or #p (NIP-47)' } };
  return p;
}

/** The payment side's answer to "is this pubkey a member now?", handed in where the relay is wired. */
export type Membership = {
  isMember(pubkey: string, now: number): boolean;
  /** Where this pubkey pays for membership. */
  payUrl(pubkey: string): string;
  paymentsUrl?: string;
};

export type MembersOnlyOptions = {
  /** Members-only kinds; undefined: every kind but `exempt`. */
  kinds?: readonly number[];
  exempt?: readonly number[];
  /** A reader may always read its own events and those p-tagged to it. */
  readOwn: boolean;
  membership: Membership;
};

/**
 * Members-only reads: the relay (or some kinds) is served only to authenticated members
 * (admitted, subscribed or allow-listed). Membership is checked per filter at REQ time and
 * again for each live event of a members-only kind, so a subscription stops when it ends.
 */
export function membersOnly(opts: MembersOnlyOptions): ReadPolicy {
  const listed = opts.kinds === undefined ? undefined : new Set(opts.kinds);
  const exempt = new Set(opts.exempt ?? []);
  const covers = (k: number) => (listed ? listed.has(k) : !exempt.has(k));
  const { membership, readOwn } = opts;
  const p: ReadPolicy = (f, { authed, now }) => {
    if (f.kinds !== undefined && !f.kinds.some(covers)) return undefined;
    const readers = [...authed];
    if (readers.some((pk) => membership.isMember(pk, now))) {
      return {
        filter: f,
        deliver: (ev) =>
          !covers(ev.kind) || readers.some((pk) => membership.isMember(pk, nowSeconds())) || (readOwn && isReader(ev, readers)),
      };
    }
    if (readOwn && onlyOwn(f, authed)) return undefined;
    // A filter without kinds, where only some kinds are for members: leave those out.
    if (f.kinds === undefined && listed) return { filter: withRestriction(f, { kinds: [...listed], readers: readOwn ? readers : [] }) };
    return readers.length === 0
      ? reason('auth-required', 'this relay serves these events to members only: authenticate with NIP-42 AUTH')
      : reason('restricted', `reading requires membership: ${membership.payUrl(readers[0])}`);
  };
  p.nip11 = {
    name: 'members_only',
    info: {
      kinds: opts.kinds === undefined ? 'all' : [...opts.kinds],
      ...(opts.kinds === undefined && exempt.size > 0 ? { except_kinds: [...exempt] } : {}),
      readers: 'admitted, subscribed or allow-listed pubkeys, authenticated with NIP-42',
      read_own_always: readOwn,
      ...(membership.paymentsUrl ? { payments_url: membership.paymentsUrl } : {}),
    },
    everyReadNeedsAuth: opts.kinds === undefined && exempt.size === 0 && !readOwn,
  };
  return p;
}

/** NIP-47 kinds a members-only relay still serves to everyone (to the parties named, see walletTraffic). */
const NIP47_KINDS: readonly number[] = [13194, ...WALLET_TRAFFIC_KINDS];

/** The relay's read policies from the config, in order. `membership` is needed for READ_ACCESS=members. */
export function defaultReadPolicies(config: Config, membership?: Membership): ReadPolicy[] {
  const out: ReadPolicy[] = [];
  if (config.AUTH_REQUIRED) out.push(authRequiredReads());
  const priv = config.PRIVATE_KINDS;
  if (priv.length > 0) out.push(privateKinds(priv));
  if (config.PRIVATE_WALLET_TRAFFIC) out.push(walletTraffic());
  if (config.READ_ACCESS === 'members') {
    if (!membership) throw new Error('READ_ACCESS=members needs the accounts of the payment side');
    const kinds = config.MEMBERS_ONLY_KINDS;
    out.push(
      membersOnly({
        kinds: kinds.length > 0 ? kinds : undefined,
        // Wallets (the dev Lightning network's among them) keep working over a members-only
        // relay; their traffic still goes only to the parties it names.
        exempt: config.PRIVATE_WALLET_TRAFFIC ? NIP47_KINDS : [],
        readOwn: config.READ_OWN_ALWAYS,
        membership,
      }),
    );
  }
  return out;
}
