/** NIP-01 machine-readable prefixes for OK/CLOSED, plus NIP-42's `auth-required` and `unsupported`. */
export type ReasonPrefix =
  | 'invalid'
  | 'duplicate'
  | 'blocked'
  | 'rate-limited'
  | 'pow'
  | 'restricted'
  | 'auth-required'
  | 'error'
  | 'mute'
  | 'unsupported';

export function reason(prefix: ReasonPrefix, message: string): string {
  return `${prefix}: ${message}`;
}
