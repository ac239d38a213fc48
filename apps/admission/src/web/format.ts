/** Pure formatting helpers for the pay page (no DOM). */

const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const satFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 3 });

/** "21 sats", "1 sat", "1.5 sats (1,500 msat)": msat shown only when the amount is not whole sats. */
export function formatSats(msat: number): string {
  const sats = msat / 1000;
  const unit = sats === 1 ? 'sat' : 'sats';
  if (Number.isInteger(sats)) return `${intFmt.format(sats)} ${unit}`;
  return `${satFmt.format(sats)} ${unit} (${intFmt.format(msat)} msat)`;
}

/** The short form for a compact place (a button, a chip): "21 sats" or "1,500 msat". */
export function formatSatsShort(msat: number): string {
  const sats = msat / 1000;
  if (Number.isInteger(sats)) return `${intFmt.format(sats)} ${sats === 1 ? 'sat' : 'sats'}`;
  return `${intFmt.format(msat)} msat`;
}

const UNITS: Array<[number, string]> = [
  [365 * 86400, 'year'],
  [7 * 86400, 'week'],
  [86400, 'day'],
  [3600, 'hour'],
  [60, 'minute'],
  [1, 'second'],
];

/** 2592000 -> "30 days" (no months: they are not all 30 days), 604800 -> "1 week", 3600 -> "1 hour": the largest unit that divides it. */
export function formatPeriod(seconds: number): string {
  if (!(seconds > 0)) return '';
  for (const [size, name] of UNITS) {
    if (seconds % size === 0 && seconds >= size) {
      const n = seconds / size;
      return `${n} ${name}${n === 1 ? '' : 's'}`;
    }
  }
  return `${seconds} seconds`;
}

/** "per 30 days" / "per day" wording. */
export function formatPer(seconds: number): string {
  const p = formatPeriod(seconds);
  return p.startsWith('1 ') ? `per ${p.slice(2)}` : `every ${p}`;
}

/** Seconds left -> "14:59" or "1:02:03". */
export function formatCountdown(secondsLeft: number): string {
  const s = Math.max(0, Math.floor(secondsLeft));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const mm = h > 0 ? String(m).padStart(2, '0') : String(m);
  return `${h > 0 ? `${h}:` : ''}${mm}:${String(sec).padStart(2, '0')}`;
}

/** Unix seconds -> a local date and time, e.g. "Mar 3, 2026, 14:05". */
export function formatDate(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
  });
}

/** "in 3 days" / "2 hours ago". */
export function formatRelative(unixSeconds: number, nowMs = Date.now()): string {
  const diff = unixSeconds - nowMs / 1000;
  const abs = Math.abs(diff);
  const rtf = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });
  const pick: Array<[number, Intl.RelativeTimeFormatUnit]> = [
    [365 * 86400, 'year'],
    [30 * 86400, 'month'],
    [86400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
  ];
  for (const [size, unit] of pick) if (abs >= size) return rtf.format(Math.round(diff / size), unit);
  return rtf.format(Math.round(diff), 'second');
}

/** "npub1abcdef…uvwxyz" */
export function shorten(s: string, head = 12, tail = 6): string {
  return s.length <= head + tail + 1 ? s : `${s.slice(0, head)}…${s.slice(-tail)}`;
}

/** Well-known kind names, for the per-kind price list. */
export const KIND_NAMES: Record<string, string> = {
  '0': 'profile metadata',
  '1': 'short note',
  '3': 'follow list',
  '4': 'encrypted DM (NIP-04)',
  '5': 'deletion',
  '6': 'repost',
  '7': 'reaction',
  '1063': 'file metadata',
  '1984': 'report',
  '9734': 'zap request',
  '9735': 'zap receipt',
  '10002': 'relay list',
  '30023': 'long-form article',
};

/** 350 -> "350 bytes", 40960 -> "40 KB", 1572864 -> "1.5 MB" (1 KB = 1024 bytes, as the allowance counts them). */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${intFmt.format(bytes)} ${bytes === 1 ? 'byte' : 'bytes'}`;
  const [n, unit] = bytes < 1024 * 1024 ? [bytes / 1024, 'KB'] : bytes < 1024 ** 3 ? [bytes / 1024 ** 2, 'MB'] : [bytes / 1024 ** 3, 'GB'];
  return `${oneDecimal.format(n)} ${unit}`;
}
const oneDecimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

/**
 * A sender's price now, from /api/pricing?pubkey= (`multiplier`, and `why` in the refusal's
 * words): "4x the base: 350 events from you in the last hour", or "the base price" at 1x.
 */
export function formatMultiplier(multiplier: number, why: string): string {
  if (!(multiplier > 1)) return 'the base price';
  const times = `${intFmt.format(multiplier)}x the base`;
  return why ? `${times}: ${why}` : times;
}

/** What is left of the daily allowance: "12 of 50 events, 40 KB of 256 KB left today". */
export function formatAllowanceLeft(left: { events: number; bytes: number }, allowance: { events: number; bytes: number }): string {
  const events = `${intFmt.format(left.events)} of ${intFmt.format(allowance.events)} ${allowance.events === 1 ? 'event' : 'events'}`;
  return `${events}, ${formatBytes(left.bytes)} of ${formatBytes(allowance.bytes)} left today`;
}
