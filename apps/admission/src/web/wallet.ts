/**
 * Paying from a wallet in the browser with Bitcoin Connect: a WebLN extension (window.webln) or
 * Nostr Wallet Connect (paste or scan a connection string, or one of the NWC wallets it lists).
 * The modal also shows the invoice's QR for paying from any other wallet.
 * The page never trusts the wallet's word: "paid" is shown only when the service says so.
 */
import * as bitcoinConnect from '@getalby/bitcoin-connect';

/**
 * The part of Bitcoin Connect's API (dist/api.d.ts) that we use. Its bundled typings re-export with
 * extensionless paths, which TypeScript's NodeNext resolution cannot follow, so we name them here.
 */
interface BitcoinConnectApi {
  init(config?: { appName?: string; appIcon?: string; showBalance?: boolean; filters?: Array<'nwc'> }): void;
  launchPaymentModal(args: {
    invoice: string;
    paymentMethods?: 'all' | 'internal' | 'external';
    onPaid?: (response: { preimage: string }) => void;
    onCancelled?: () => void;
  }): { setPaid: (response: { preimage: string }) => void };
  closeModal(): void;
}
const { init, launchPaymentModal, closeModal } = bitcoinConnect as unknown as BitcoinConnectApi;

let ready = false;

export function initWallet(appName: string): void {
  if (ready) return;
  ready = true;
  init({ appName, showBalance: false });
}

export interface WalletPayment {
  /** Tell the modal the invoice is paid (seen by the service), and close it. */
  done(): void;
}

/** Opens the Bitcoin Connect payment modal for this invoice. */
export function payWithWallet(bolt11: string, handlers: { onPaid?: () => void; onCancelled?: () => void }): WalletPayment {
  const modal = launchPaymentModal({
    invoice: bolt11,
    onPaid: () => handlers.onPaid?.(),
    onCancelled: () => handlers.onCancelled?.(),
  });
  void modal;
  return {
    done: () => {
      try {
        closeModal();
      } catch {
        /* already closed */
      }
    },
  };
}
