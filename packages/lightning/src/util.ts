import { createHash } from 'node:crypto';
import { isHex64 } from '@paidrelay/nostr';

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256')
    .update(typeof data === 'string' ? Buffer.from(data, 'utf8') : data)
    .digest('hex');
}

/** sha256(preimage) == paymentHash, both hex. */
export function preimageMatches(preimage: string, paymentHash: string): boolean {
  return isHex64(preimage) && sha256Hex(Buffer.from(preimage, 'hex')) === paymentHash;
}

export function isPositiveMsat(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (err && typeof err === 'object' && 'message' in err) return String((err as { message: unknown }).message);
  return String(err);
}
