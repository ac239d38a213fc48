/**
 * The prices the Pricing tab edits, in the order shown: the NIP-86 `setprices` field, its
 * label, and its unit in the form (msat amounts are typed in sats, to the msat).
 */
export const PRICE_FIELDS: [field: string, label: string, unit: 'sats' | 'seconds'][] = [
  ['admission_msat', 'Admission (one time)', 'sats'],
  ['subscription_msat', 'Subscription, per period', 'sats'],
  ['subscription_period_seconds', 'Subscription period', 'seconds'],
  ['publication_msat', 'Publication, per event (from the balance)', 'sats'],
  ['publication_per_kb_msat', 'Publication, per started KiB', 'sats'],
  ['event_msat', 'One held event, its own invoice', 'sats'],
];

/** The per-kind publication prices: `kind:sats` pairs, comma separated. */
export const PRICE_KINDS_FIELD = 'publication_kinds';

/** A spam policy field's unit in the form, and how many of the stored unit one of it is. */
export const SPAM_UNITS = {
  events: 1,
  KiB: 1024,
  days: 86_400,
  minutes: 60,
  sats: 1000,
  admissions: 1,
  '×': 1,
  'writes/s': 1,
} as const;
export type SpamUnit = keyof typeof SPAM_UNITS;

/**
 * The spam policy the Pricing tab edits (NIP-86 `setprices` `spam`), in the order shown: the
 * field, its label, its unit in the form, and a line of help.
 */
export const SPAM_FIELDS: [field: string, label: string, unit: SpamUnit, help: string][] = [
  [
    'allowance_fresh_events',
    'Daily allowance of a fresh key',
    'events',
    'Free writes a day (beyond the admission) for a key admitted today.',
  ],
  ['allowance_fresh_bytes', 'Daily allowance of a fresh key', 'KiB', 'Bytes of event JSON a day for that key.'],
  [
    'allowance_full_events',
    'Daily allowance of a trusted key',
    'events',
    'Reached by account age or paid history; it grows evenly from the fresh one.',
  ],
  ['allowance_full_bytes', 'Daily allowance of a trusted key', 'KiB', 'Bytes of event JSON a day for a trusted key.'],
  ['trust_age_seconds', 'Account age for full trust', 'days', 'An account admitted this long ago gets the full allowance.'],
  ['trust_paid_msat', 'Paid history for full trust', 'sats', 'So does one that has paid this much in all.'],
  [
    'window_seconds',
    'Surge window',
    'minutes',
    'The sliding window whose volume drives the multiplier; its counters start empty when it changes.',
  ],
  [
    'step_events',
    'Doubling step per key',
    'events',
    'The price doubles for each further this many events from one key in the window (0: off).',
  ],
  ['step_bytes', 'Doubling step per key', 'KiB', 'Or this many bytes (0: off).'],
  [
    'network_step_events',
    'Doubling step per network',
    'events',
    'The same for all keys of one network (IPv4 /24, IPv6 /56): many fresh keys pay too.',
  ],
  ['network_step_bytes', 'Doubling step per network', 'KiB', 'Or this many bytes from the network (0: off).'],
  [
    'network_admission_step',
    'Admissions per doubling',
    'admissions',
    "A network's admission price doubles for each this many admissions bought from it in the window (0: off).",
  ],
  ['max_multiplier', 'Largest multiplier', '×', 'The cap on every multiplier (1: prices never surge).'],
  [
    'capacity_per_second',
    'Relay capacity',
    'writes/s',
    'Writes per second (all replicas) that count as full load: at 90% the base price doubles, under 60% it falls back (0: off).',
  ],
];

/** A stored spam value as the form shows it (bytes in KiB, seconds in days or minutes, msat in sats). */
export const spamShown = (unit: SpamUnit, stored: number): number => stored / SPAM_UNITS[unit];

/** A form value as the stored integer, or NaN when it is not a number of that unit (or not whole once converted). */
export function spamStored(unit: SpamUnit, typed: string): number {
  const v = Number(typed) * SPAM_UNITS[unit];
  if (typed.trim() === '' || !Number.isFinite(v)) return Number.NaN;
  const whole = Math.round(v);
  return Math.abs(v - whole) < 1e-6 || unit === 'days' || unit === 'minutes' || unit === 'KiB' ? whole : Number.NaN;
}
