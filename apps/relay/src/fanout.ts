import { compileFilter, encodeEvent, type Filter, type NostrEvent } from '@paidrelay/nostr';
import { send, type Subscription } from './connection.ts';
import { passesRestrictions, type ReadFilter } from './read-policy.ts';

type Entry = { sub: Subscription; match: (ev: NostrEvent) => boolean };

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
  size = 0;

  add(sub: Subscription): void {
    const filed: { key: string | null; entry: Entry }[] = [];
    for (let i = 0; i < sub.filters.length; i++) {
      const filter = sub.filters[i];
      const entry = { sub, match: liveMatcher(filter, sub.deliver?.[i]) };
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
      }
    }
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
    }
    this.entries.delete(sub);
    this.size--;
  }

  /** Every subscription with at least one filter that matches the event, each once. */
  matching(ev: NostrEvent): Set<Subscription> {
    const out = new Set<Subscription>();
    const consider = (set: Set<Entry> | undefined) => {
      if (!set) return;
      for (const e of set) if (!out.has(e.sub) && e.match(ev)) out.add(e.sub);
    };
    consider(this.byKey.get('i' + ev.id));
    consider(this.byKey.get('a' + ev.pubkey));
    consider(this.byKey.get('k' + ev.kind));
    for (const tag of ev.tags) {
      if (tag.length >= 2 && tag[0].length === 1) consider(this.byKey.get('t' + tag[0] + ':' + tag[1]));
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

/** Sends an event to every matching live subscription of this process. Returns how many got it. */
export function deliver(index: SubscriptionIndex, ev: NostrEvent, json: string): number {
  let n = 0;
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
    send(sub.conn, encodeEvent(sub.id, json));
    n++;
  }
  return n;
}
