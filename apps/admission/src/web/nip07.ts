/** NIP-07: a browser extension that holds the key fills it in on request. */
import type { WindowNostr } from 'nostr-tools/nip07';
import { npubEncode } from 'nostr-tools/nip19';
import { HEX64, loadAccount, rememberPubkey } from './account.ts';
import { $, $button, $input, setFieldError, show } from './dom.ts';

declare global {
  interface Window {
    nostr?: WindowNostr;
  }
}

export function detectExtension(): void {
  const btn = $button('nip07');
  if (window.nostr && btn.hidden) show(btn, true);
}

export async function useExtension(): Promise<void> {
  const btn = $button('nip07');
  const input = $input('pubkey');
  if (!window.nostr) return;
  btn.disabled = true;
  try {
    const hex = (await window.nostr.getPublicKey()).toLowerCase();
    if (!HEX64.test(hex)) throw new Error('The extension returned an invalid public key.');
    input.value = npubEncode(hex);
    setFieldError(input, $('pubkey-error'), null);
    rememberPubkey(input.value);
    await loadAccount(hex);
  } catch (err) {
    const msg = err instanceof Error && err.message ? err.message : 'The extension did not share a key.';
    setFieldError(input, $('pubkey-error'), `Your extension did not give a key: ${msg}`);
  } finally {
    btn.disabled = false;
  }
}
