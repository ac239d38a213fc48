import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isHex64 } from '@paidrelay/nostr';
import { bytesToHex, hexToBytes } from 'nostr-tools/utils';
import { generateSecretKey, getPublicKey } from 'nostr-tools/pure';
import writeFileAtomic from 'write-file-atomic';

export type RelayKey = { secretKey: Uint8Array; pubkey: string };

/**
 * The relay's own identity (NIP-11 `self`): from RELAY_SECRET_KEY, or created once in the
 * data folder so a laptop relay keeps its identity across restarts. The file is written
 * atomically (a temporary file renamed over it), so a crash never leaves half a key.
 */
export function loadRelayKey(secretHex: string | undefined, dataDir: string, production = false): RelayKey {
  let hex = secretHex;
  if (!hex && production) {
    // Every replica must speak as the same relay (NIP-11 self, zap receipts): a shared secret.
    throw new Error('RELAY_SECRET_KEY is required in production (the relay identity must be the same on every replica)');
  }
  if (!hex) {
    const file = join(dataDir, 'relay.key');
    if (existsSync(file)) {
      hex = readFileSync(file, 'utf8').trim();
      if (!isHex64(hex))
        throw new Error(`${file} does not hold a secret key (64 lowercase hex characters): fix or remove it, or set RELAY_SECRET_KEY`);
    } else {
      mkdirSync(dataDir, { recursive: true });
      hex = bytesToHex(generateSecretKey());
      writeFileAtomic.sync(file, hex + '\n', { mode: 0o600 });
    }
  }
  const secretKey = hexToBytes(hex);
  return { secretKey, pubkey: getPublicKey(secretKey) };
}
