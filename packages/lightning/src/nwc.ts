import './websocket.ts';
import { NWCClient, Nip47Error, Nip47WalletError, type Nip47Notification, type Nip47Transaction } from '@getalby/sdk/nwc';
import { decodeBolt11 } from './bolt11.ts';
import { instrumentPool, type InstrumentedPool } from './pool.ts';
import {
  LightningError,
  silentLog,
  type Invoice,
  type InvoiceLookup,
  type LightningBackend,
  type Log,
  type MakeInvoiceParams,
  type Payment,
} from './types.ts';
import { errorMessage, isPositiveMsat, preimageMatches, sha256Hex } from './util.ts';
import { isHex64, nowSeconds } from '@paidrelay/nostr';

export type ConnectNwcOptions = {
  /** Reported as `backend.kind`; the dev network's relay wallet is 'dev'. */
  kind?: 'nwc' | 'dev';
  logger?: Log;
  /** Longest wait for one wallet answer (make_invoice, lookup_invoice), ms. Default 20 s. */
  timeoutMs?: number;
};

const REQUIRED_METHODS = ['make_invoice', 'lookup_invoice'] as const;

/** The connection string without its secret, for messages and logs. */
export function redactNwc(connectionString: string): string {
  return connectionString.replace(/secret=[^&]*/gi, 'secret=<redacted>');
}

/** Parses and checks a NIP-47 connection string. Throws LightningError BAD_CONNECTION_STRING. */
export function parseNwcConnectionString(connectionString: string): {
  walletPubkey: string;
  relayUrls: string[];
  secret: string;
  lud16?: string;
} {
  const bad = (why: string) =>
    new LightningError('BAD_CONNECTION_STRING', `invalid NWC connection string (${why}): ${redactNwc(String(connectionString))}`);
  if (typeof connectionString !== 'string' || connectionString.trim() === '') throw bad('empty');
  const s = connectionString.trim();
  if (!/^nostr\+walletconnect:\/\/|^nostrwalletconnect:\/\//i.test(s)) throw bad('it must start with nostr+walletconnect://');
  let parsed: ReturnType<typeof NWCClient.parseWalletConnectUrl>;
  try {
    parsed = NWCClient.parseWalletConnectUrl(s, true);
  } catch (err) {
    throw bad(errorMessage(err).replace(/^Invalid NWC URL: /, ''));
  }
  for (const r of parsed.relayUrls) {
    if (!/^wss?:\/\//i.test(r)) throw bad(`relay ${r} is not a ws:// or wss:// URL`);
  }
  return {
    walletPubkey: parsed.walletPubkey,
    relayUrls: parsed.relayUrls,
    secret: parsed.secret!,
    ...(parsed.lud16 ? { lud16: parsed.lud16 } : {}),
  };
}

/**
 * Production path: any NIP-47 wallet, through @getalby/sdk NWCClient. Checks the connection
 * string, reads the wallet's info event (kind 13194) and get_info, and refuses a wallet that
 * cannot make_invoice and lookup_invoice.
 */
export async function connectNwc(connectionString: string, opts: ConnectNwcOptions = {}): Promise<LightningBackend> {
  const parsed = parseNwcConnectionString(connectionString);
  const log = opts.logger ?? silentLog;
  const client = new NWCClient({ nostrWalletConnectUrl: connectionString.trim() });
  const pool = instrumentPool(client.pool, { log });
  const where = `wallet ${parsed.walletPubkey.slice(0, 12)}… on ${parsed.relayUrls.join(', ')}`;
  try {
    let info: Awaited<ReturnType<NWCClient['getWalletServiceInfo']>>;
    try {
      info = await client.getWalletServiceInfo();
    } catch (err) {
      throw new LightningError('NETWORK', `cannot reach ${where}: ${errorMessage(err)}`, { cause: err });
    }
    // get_info names what THIS connection may do (the info event speaks for the whole service).
    let methods: string[] = info.capabilities;
    try {
      const gi = await client.getInfo();
      if (Array.isArray(gi.methods) && gi.methods.length > 0) methods = gi.methods;
    } catch (err) {
      log.debug({ err }, 'get_info failed; using the info event capabilities');
    }
    const missing = REQUIRED_METHODS.filter((m) => !methods.includes(m));
    if (missing.length > 0) {
      throw new LightningError(
        'UNSUPPORTED_WALLET',
        `${where} lacks ${missing.join(' and ')} (it offers: ${methods.join(' ') || 'nothing'}); the relay needs a wallet connection that can make and look up invoices`,
      );
    }
    const notifications = info.capabilities.includes('notifications') && info.notifications.includes('payment_received');
    if (!notifications) log.warn({ where }, 'wallet sends no payment_received notifications; payments are found by lookup_invoice only');
    return new NwcBackend(client, pool, opts.kind ?? 'nwc', log, opts.timeoutMs ?? 20_000, notifications);
  } catch (err) {
    client.close();
    throw err;
  }
}

class NwcBackend implements LightningBackend {
  private readonly unsubscribers = new Set<() => void>();
  private closed = false;

  constructor(
    private readonly client: NWCClient,
    private readonly pool: InstrumentedPool,
    readonly kind: 'nwc' | 'dev',
    private readonly log: Log,
    private readonly timeoutMs: number,
    /** Whether the wallet advertises payment_received notifications. */
    readonly notifications: boolean,
  ) {}

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new LightningError('CLOSED', 'the NWC backend is closed');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new LightningError('TIMEOUT', `${what}: no answer from the wallet in ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
    });
    try {
      return await Promise.race([fn(), timeout]);
    } catch (err) {
      if (err instanceof LightningError) throw err;
      if (err instanceof Nip47Error) {
        // A wallet answer carries a NIP-47 code; the SDK's own failures (publish, timeout) say INTERNAL/OTHER.
        const code = err instanceof Nip47WalletError ? err.code : 'NETWORK';
        throw new LightningError(code, `${what}: ${err.message}`, { cause: err });
      }
      throw new LightningError('NETWORK', `${what}: ${errorMessage(err)}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  async makeInvoice(p: MakeInvoiceParams): Promise<Invoice> {
    if (!isPositiveMsat(p.amountMsat)) throw new LightningError('BAD_REQUEST', 'amountMsat must be a positive integer');
    if (!Number.isSafeInteger(p.expirySeconds) || p.expirySeconds <= 0) {
      throw new LightningError('BAD_REQUEST', 'expirySeconds must be a positive integer');
    }
    const descriptionHash = p.descriptionHash?.toLowerCase();
    if (descriptionHash !== undefined) {
      if (!isHex64(descriptionHash)) throw new LightningError('BAD_REQUEST', 'descriptionHash must be 32 bytes of hex');
      if (p.description !== undefined && sha256Hex(p.description) !== descriptionHash) {
        throw new LightningError('BAD_REQUEST', 'descriptionHash is not the sha256 of description');
      }
    }
    const tx = await this.call('make_invoice', () =>
      this.client.makeInvoice({
        amount: p.amountMsat,
        ...(p.description !== undefined ? { description: p.description } : {}),
        ...(descriptionHash !== undefined ? { description_hash: descriptionHash } : {}),
        expiry: p.expirySeconds,
      }),
    );
    // Trust the signed invoice, and check it is the one we asked for.
    let d: ReturnType<typeof decodeBolt11>;
    try {
      d = decodeBolt11(tx.invoice);
    } catch (err) {
      throw new LightningError('BAD_WALLET_RESPONSE', `make_invoice: the wallet returned an invalid invoice: ${errorMessage(err)}`);
    }
    if (tx.payment_hash && tx.payment_hash.toLowerCase() !== d.paymentHash) {
      throw new LightningError('BAD_WALLET_RESPONSE', 'make_invoice: payment_hash does not match the invoice');
    }
    if (d.amountMsat !== p.amountMsat) {
      throw new LightningError('BAD_WALLET_RESPONSE', `make_invoice: invoice amount ${d.amountMsat} msat, asked for ${p.amountMsat}`);
    }
    if (descriptionHash !== undefined && d.descriptionHash !== descriptionHash) {
      throw new LightningError('BAD_WALLET_RESPONSE', 'make_invoice: the invoice does not commit to the description hash');
    }
    const description = d.description ?? p.description;
    return {
      bolt11: tx.invoice,
      paymentHash: d.paymentHash,
      amountMsat: d.amountMsat,
      createdAt: d.createdAt,
      expiresAt: d.expiresAt,
      ...(description !== undefined && description !== '' ? { description } : {}),
      ...(d.descriptionHash !== undefined ? { descriptionHash: d.descriptionHash } : {}),
    };
  }

  async lookupInvoice(paymentHash: string): Promise<InvoiceLookup> {
    const hash = typeof paymentHash === 'string' ? paymentHash.toLowerCase() : '';
    if (!isHex64(hash)) throw new LightningError('BAD_REQUEST', 'paymentHash must be 32 bytes of hex');
    const tx = await this.call('lookup_invoice', () => this.client.lookupInvoice({ payment_hash: hash }));
    if (tx.payment_hash && tx.payment_hash.toLowerCase() !== hash) {
      throw new LightningError('BAD_WALLET_RESPONSE', 'lookup_invoice: the wallet answered about another payment hash');
    }
    return mapLookup(tx, hash);
  }

  async onPaymentReceived(handler: (p: Payment) => void): Promise<() => void> {
    if (this.closed) throw new LightningError('CLOSED', 'the NWC backend is closed');
    const unsub = await this.call('subscribe notifications', () =>
      this.client.subscribeNotifications((n) => this.deliver(n, handler), ['payment_received']),
    );
    await this.pool.ready((f) => f.kinds?.some((k) => k === 23196 || k === 23197) === true);
    let done = false;
    const off = () => {
      if (done) return;
      done = true;
      this.unsubscribers.delete(off);
      unsub();
    };
    this.unsubscribers.add(off);
    return off;
  }

  private deliver(n: Nip47Notification, handler: (p: Payment) => void): void {
    if (n.notification_type !== 'payment_received') return;
    const t = n.notification;
    const hash = typeof t?.payment_hash === 'string' ? t.payment_hash.toLowerCase() : '';
    const preimage = typeof t?.preimage === 'string' ? t.preimage.toLowerCase() : '';
    if (!isHex64(hash) || !isPositiveMsat(t.amount) || (t.type !== undefined && t.type !== 'incoming')) {
      this.log.warn({ hash }, 'ignored a malformed payment_received notification');
      return;
    }
    // The wallet signed it (the SDK checks the author and decrypts it); the preimage proves the payment.
    if (!preimageMatches(preimage, hash)) {
      this.log.warn({ hash }, 'ignored a payment_received notification whose preimage does not match its hash');
      return;
    }
    const payment: Payment = {
      paymentHash: hash,
      amountMsat: t.amount,
      preimage,
      settledAt: typeof t.settled_at === 'number' && t.settled_at > 0 ? t.settled_at : nowSeconds(),
    };
    try {
      const r: unknown = handler(payment);
      if (r instanceof Promise) r.catch((err: unknown) => this.log.error({ hash, err }, 'payment handler failed'));
    } catch (err) {
      this.log.error({ hash, err }, 'payment handler failed');
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const off of [...this.unsubscribers]) off();
    this.client.close();
  }
}

/** NIP-47 transaction -> our lookup answer. 'settled' only when the wallet says so. */
export function mapLookup(tx: Nip47Transaction, hash: string, now = nowSeconds()): InvoiceLookup {
  const preimage = typeof tx.preimage === 'string' && tx.preimage !== '' ? tx.preimage.toLowerCase() : undefined;
  if (preimage !== undefined && !preimageMatches(preimage, hash) && (tx.state === 'settled' || tx.state === undefined)) {
    throw new LightningError('BAD_WALLET_RESPONSE', 'lookup_invoice: the preimage does not match the payment hash');
  }
  const amountMsat = typeof tx.amount === 'number' ? tx.amount : 0;
  const settledAt = typeof tx.settled_at === 'number' && tx.settled_at > 0 ? tx.settled_at : undefined;
  let state: InvoiceLookup['state'];
  const s = tx.state as string | undefined;
  if (s === 'settled') state = 'settled';
  else if (s === 'expired') state = 'expired';
  else if (s === 'failed') state = 'failed';
  else if (s === 'pending' || s === 'accepted') state = 'pending';
  else if (settledAt !== undefined && preimage !== undefined)
    state = 'settled'; // older wallets: no `state`, a settled_at
  else state = typeof tx.expires_at === 'number' && tx.expires_at > 0 && tx.expires_at <= now ? 'expired' : 'pending';
  if (state === 'pending' && typeof tx.expires_at === 'number' && tx.expires_at > 0 && tx.expires_at <= now && s !== 'accepted') {
    state = 'expired';
  }
  return {
    state,
    amountMsat,
    ...(state === 'settled' && preimage !== undefined ? { preimage } : {}),
    ...(state === 'settled' ? { settledAt: settledAt ?? now } : {}),
  };
}
