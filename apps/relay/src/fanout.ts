import { compileFilter, encodeEvent, type Filter, type NostrEvent } from '@paidrelay/nostr';
import { send, type Subscription } from './connection.ts';
import { passesRestrictions, type ReadFilter } from './read-policy.ts';

/** `once`: the subscription is filed under this one key only, so matching it needs no de-duplication. */
type Entry = { sub: Subscription; match: (ev: NostrEvent) => boolean; once: boolean };

const BACKLOG_MAX = 10_000;

/**
 * Live subscriptions, indexed so that an event is matched only against filters that could
 * match it: each filter is filed under its most selective field (ids, then authors, then a
 * tag, then kinds), or under "any" when it has none of those.
 */
export class SubscriptionIndex {
  private byKey = new Map<string, Set<Entry>>();
  private any = new Set<Entry>();
  private entries = new Map<Subscription, { key: string | null; entry: Entry }[]>();
  /** Tag names some filter is filed under, with how many keys: an event's other tags are not looked up. */
  private tagNames = new Map<string, number>();
  size = 0;

  add(sub: Subscription): void {
    const filed: { key: string | null; entry: Entry }[] = [];
    const entries: Entry[] = [];
    for (let i = 0; i < sub.filters.length; i++) {
      const filter = sub.filters[i];
      const entry = { sub, match: liveMatcher(filter, sub.deliver?.[i]), once: false };
      entries.push(entry);
      const keys = indexKeys(filter);
      if (keys === null) {
        this.any.add(entry);
        filed.push({ key: null, entry });
        continue;
      }
      for (const key of keys) {
        let set = this.byKey.get(key);
        if (!set) this.byKey.set(key, (set = new Set()));
        set.add(entry);
        filed.push({ key, entry });
        if (key[0] === 't') this.tagNames.set(key[1], (this.tagNames.get(key[1]) ?? 0) + 1);
      }
    }
    // Filed once in all (one filter, one key): no event can reach it through two keys.
    if (filed.length === 1) entries[0].once = true;
    this.entries.set(sub, filed);
    this.size++;
  }

  remove(sub: Subscription): void {
    const filed = this.entries.get(sub);
    if (!filed) return;
    for (const { key, entry } of filed) {
      if (key === null) {
        this.any.delete(entry);
        continue;
      }
      const set = this.byKey.get(key);
      set?.delete(entry);
      if (set && set.size === 0) this.byKey.delete(key);
      if (key[0] === 't') {
        const n = (this.tagNames.get(key[1]) ?? 0) - 1;
        if (n > 0) this.tagNames.set(key[1], n);
        else this.tagNames.delete(key[1]);
      }
    }
    this.entries.delete(sub);
    this.size--;
  }

  /**
   * Every subscription with at least one filter that matches the event, each once. Only
   * subscriptions filed under several keys are de-duplicated: a Set of every match, built for
   * each event, was a good part of the fan-out's own time with thousands of subscribers.
   */
  matching(ev: NostrEvent): Subscription[] {
    const out: Subscription[] = [];
    if (this.size === 0) return out;
    let seen: Set<Subscription> | null = null;
    const consider = (set: Set<Entry> | undefined) => {
      if (!set) return;
      for (const e of set) {
        if (e.once) {
          if (e.match(ev)) out.push(e.sub);
        } else if (!seen?.has(e.sub) && e.match(ev)) {
          (seen ??= new Set()).add(e.sub);
          out.push(e.sub);
        }
      }
    };
    consider(this.byKey.get('i' + ev.id));
    consider(this.byKey.get('a' + ev.pubkey));
    consider(this.byKey.get('k' + ev.kind));
    if (this.tagNames.size > 0) {
      for (const tag of ev.tags) {
        if (tag.length >= 2 && this.tagNames.has(tag[0])) consider(this.byKey.get('t' + tag[0] + ':' + tag[1]));
      }
    }
    consider(this.any);
    return out;
  }
}

/** The filter, its read-policy restrictions, then its delivery check (the cheap tests first). */
function liveMatcher(filter: ReadFilter, deliver: ((ev: NostrEvent) => boolean) | undefined): (ev: NostrEvent) => boolean {
  const match = compileFilter(filter);
  const restrict = filter.restrict;
  if (!restrict && !deliver) return match;
  return (ev) => match(ev) && (!restrict || passesRestrictions(restrict, ev)) && (!deliver || deliver(ev));
}

function indexKeys(f: Filter): string[] | null {
  if (f.ids) return f.ids.map((id) => 'i' + id);
  if (f.authors) return f.authors.map((a) => 'a' + a);
  for (const key of Object.keys(f)) {
    if (key[0] === '#' && key.length === 2) return (f[key as `#${string}`] as string[]).map((v) => 't' + key[1] + ':' + v);
  }
  if (f.kinds) return f.kinds.map((k) => 'k' + k);
  return null;
}

/**
 * Sends an event to every matching live subscription of this process. Returns how many got it.
 * The frame is built once per subscription id: subscriptions that share an id (clients often
 * name their feed the same way) get the same string, which uWS then reads without V8 first
 * flattening a fresh copy of the event for each of them.
 */
export function deliver(index: SubscriptionIndex, ev: NostrEvent, json: string): number {
  let n = 0;
  const frames = new Map<string, string>();
  for (const sub of index.matching(ev)) {
    if (sub.backlog) {
      // Stored events of this REQ are still being sent; keep order by queueing.
      if (sub.backlog.length < BACKLOG_MAX) sub.backlog.push({ id: ev.id, json });
      continue;
    }
    if (sub.sentStored) {
      if (Date.now() > sub.sentStored.until) sub.sentStored = undefined;
      else if (sub.sentStored.ids.has(ev.id)) continue; // already sent in the stored part
    }
    let frame = frames.get(sub.id);
    if (frame === undefined) frames.set(sub.id, (frame = encodeEvent(sub.id, json)));
    send(sub.conn, frame);
    n++;
  }
  return n;
}
