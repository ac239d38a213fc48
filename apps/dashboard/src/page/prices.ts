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
