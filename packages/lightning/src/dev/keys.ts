import { generateSecretKey } from 'nostr-tools/pure';
import { isHex64 } from '@paidrelay/nostr';
import { readFileIfExists, writeFileAtomic } from './atomic.ts';

export type DevWalletKeys = {
  /** The NIP-47 wallet service key (its pubkey is the connection string's host). */
  serviceSecret: string;
  /** The client secret handed out in the connection string. */
  clientSecret: string;
};

export type DevKeys = {
  version: 1;
  /** secp256k1 key of the dev Lightning node: signs every BOLT11 invoice. */
  nodeSecret: string;
  wallets: Record<string, DevWalletKeys>;
};

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** A valid secp256k1 secret key (nostr-tools draws it in range). */
function secretKeyHex(): string {
  return hex(generateSecretKey());
}

/**
 * Loads `${dir}/keys.json`, creating it (mode 0600) on first use and adding keys for wallets
 * it does not know yet. An unreadable or malformed file is an error, never silently replaced:
 * new keys would change every connection string.
 */
export async function loadOrCreateKeys(path: string, walletNames: readonly string[]): Promise<DevKeys> {
  const text = await readFileIfExists(path);
  let keys: DevKeys;
  let changed = false;
  if (text === undefined) {
    keys = { version: 1, nodeSecret: secretKeyHex(), wallets: {} };
    changed = true;
  } else {
    try {
      keys = JSON.parse(text) as DevKeys;
    } catch (err) {
      throw new Error(`dev wallet keys ${path} are not valid JSON: ${(err as Error).message}`);
    }
    const bad =
      keys?.version !== 1 ||
      typeof keys.nodeSecret !== 'string' ||
      !isHex64(keys.nodeSecret) ||
      typeof keys.wallets !== 'object' ||
      Object.values(keys.wallets).some((w) => !isHex64(w?.serviceSecret ?? '') || !isHex64(w?.clientSecret ?? ''));
    if (bad) throw new Error(`dev wallet keys ${path} have an unknown format; move the file away to start a new dev network`);
  }
  for (const name of walletNames) {
    if (!keys.wallets[name]) {
      keys.wallets[name] = { serviceSecret: secretKeyHex(), clientSecret: secretKeyHex() };
      changed = true;
    }
  }
  if (changed) await writeFileAtomic(path, JSON.stringify(keys, null, 1) + '\n', 0o600);
  return keys;
}
