import { gate, type Account, type History, type Pricing, type SurgeInputs, type SurgePolicy, type Volume } from '@paidrelay/pricing';

/**
 * The person-year: what a person who posts `perDay` events a day for a year pays per event under
 * a config, from the relay's own pricing functions (gate(), surge.ts) on a virtual clock, since a
 * benchmark cannot wait a year. The person pays whatever a refusal asks (admission, or a held
 * event beyond the allowance) and nothing more; the events are spread evenly over each day.
 */
export type PersonYear = { events: number; paidMsat: number; msatPerEvent: number; refusals: number };

export type PersonYearOptions = { perDay?: number; days?: number; eventBytes?: number; kind?: number; start?: number };

/** Volume in the last `seconds` before `now`, from the ascending times of the person's stored events. */
export function volumeSince(times: number[], now: number, seconds: number, eventBytes: number): Volume {
  let lo = 0;
  let hi = times.length;
  // First index with time > now - seconds (times ascending): a binary search keeps a year cheap.
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (times[mid] > now - seconds) hi = mid;
    else lo = mid + 1;
  }
  const events = times.length - lo;
  return { events, bytes: events * eventBytes };
}

export function personYear(p: Pricing, policy: SurgePolicy | undefined, opts: PersonYearOptions = {}): PersonYear {
  const perDay = opts.perDay ?? 50;
  const days = opts.days ?? 365;
  const eventBytes = opts.eventBytes ?? 616;
  const kind = opts.kind ?? 1;
  const start = opts.start ?? 1_767_225_600;
  const pubkey = 'a'.repeat(64);
  let account: Account | undefined;
  const history: History = { admittedSince: null, paidMsat: 0 };
  const stored: number[] = [];
  let refusals = 0;
  const gap = 86_400 / perDay;
  for (let i = 0; i < perDay * days; i++) {
    const now = Math.floor(start + i * gap);
    const ev = { id: i.toString(16).padStart(64, '0'), pubkey, kind, tags: [] };
    const surge = (): SurgeInputs | undefined =>
      policy && {
        policy,
        history,
        day: volumeSince(stored, now, 86_400, eventBytes),
        window: volumeSince(stored, now, policy.windowSeconds, eventBytes),
        networkWindow: volumeSince(stored, now, policy.windowSeconds, eventBytes),
        networkAdmissions: 0,
        loadLevel: 0,
      };
    // At most two refusals per event: admission first (it publishes the held event it makes free), then the event's own price.
    for (let attempt = 0; attempt < 3; attempt++) {
      const d = gate(p, ev, eventBytes, account, now, surge());
      if (d.action === 'accept' || d.action === 'debit') {
        if (d.action === 'debit') throw new Error('person-year: the person keeps no balance, a debit cannot happen');
        stored.push(now);
        break;
      }
      refusals++;
      if (attempt === 2) throw new Error(`person-year: still refused after paying: ${d.reason}`);
      if (/ for admission| days of writing/.test(d.reason)) {
        history.paidMsat += d.amountMsat;
        history.admittedSince ??= now;
        const until = p.admissionMsat > 0 ? null : now + p.subscriptionPeriodSeconds;
        account = { admitted: true, admittedUntil: until, balanceMsat: 0 };
        continue;
      }
      // Paying the held event's invoice publishes it.
      history.paidMsat += d.eventMsat;
      stored.push(now);
      break;
    }
  }
  const events = stored.length;
  return { events, paidMsat: history.paidMsat, msatPerEvent: events > 0 ? history.paidMsat / events : 0, refusals };
}
