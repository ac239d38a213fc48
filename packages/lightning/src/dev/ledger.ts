import { randomBytes } from 'node:crypto';
import { createBolt11, decodeBolt11, MAX_DESCRIPTION_BYTES } from '../bolt11.ts';
import { LightningError } from '../types.ts';
import { isPositiveMsat, sha256Hex } from '../util.ts';
import { isHex64 } from '@paidrelay/nostr';
import { JsonFile, readFileIfExists } from './atomic.ts';

/** An invoice issued by a wallet of the dev network. Times are unix seconds. */
export type DevInvoiceRecord = {
  wallet: string;
  bolt11: string;
  paymentHash: string;
  preimage: string;
  amountMsat: number;
  description?: string;
  descriptionHash?: string;
  createdAt: number;
  expiresAt: number;
  state: 'pending' | 'settled';
  settledAt?: number;
  /** The wallet that paid it. */
  paidBy?: string;
};

/** An outgoing payment made by a wallet of the dev network. */
export type DevPaymentRecord = {
  wallet: string;
  bolt11: string;
  paymentHash: string;
  preimage: string;
  amountMsat: number;
  feesPaidMsat: number;
  description?: string;
  descriptionHash?: string;
  createdAt: number;
  expiresAt: number;
  settledAt: number;
};

export type DevState = {
  version: 1;
  wallets: Record<string, { balanceMsat: number }>;
  /** by payment hash */
  invoices: Record<string, DevInvoiceRecord>;
  /** by payment hash */
  payments: Record<string, DevPaymentRecord>;
};

/** A NIP-47 transaction object (make_invoice, lookup_invoice, list_transactions, notifications). */
export type Nip47Tx = {
  type: 'incoming' | 'outgoing';
  state: 'pending' | 'settled' | 'expired' | 'failed';
  invoice: string;
  description: string;
  description_hash: string;
  preimage: string;
  payment_hash: string;
  amount: number;
  fees_paid: number;
  created_at: number;
  expires_at: number;
  settled_at: number;
};

export type MakeInvoiceInput = {
  amount: unknown;
  description?: unknown;
  description_hash?: unknown;
  expiry?: unknown;
};

export const DEFAULT_INVOICE_EXPIRY_SECONDS = 3600;
const MAX_EXPIRY_SECONDS = 365 * 24 * 3600;
/** Unpaid invoices this long past their expiry are dropped when the state is loaded. */
const PRUNE_EXPIRED_AFTER_SECONDS = 7 * 24 * 3600;
/** Largest list_transactions page, in JSON characters, before encryption (NIP-44 max is 65,535 bytes). */
const MAX_LIST_JSON_BYTES = 40_000;

const fail = (code: string, message: string) => new LightningError(code, message);

/**
 * The books of the dev Lightning network: balances, invoices and payments, all in msat.
 * Every change is written to `path` (atomically) before the promise of the change resolves,
 * and a failed write undoes the change in memory. The checks and the change itself run with
 * no await between them, so two payments of one invoice can never both succeed.
 */
export class DevLedger {
  private readonly file: JsonFile<DevState>;

  private constructor(
    readonly path: string,
    private readonly state: DevState,
    private readonly nodeSecret: string,
    private readonly clock: () => number,
  ) {
    this.file = new JsonFile(path, () => this.state);
  }

  /**
   * Loads the state at `path`, or starts a new one. Wallets named in `initialBalances` that
   * the state does not know yet are opened with that balance.
   */
  static async open(opts: {
    path: string;
    nodeSecret: string;
    initialBalances: Record<string, number>;
    clock?: () => number;
  }): Promise<DevLedger> {
    const clock = opts.clock ?? Date.now;
    const text = await readFileIfExists(opts.path);
    let state: DevState;
    if (text === undefined) {
      state = { version: 1, wallets: {}, invoices: {}, payments: {} };
    } else {
      try {
        state = JSON.parse(text) as DevState;
      } catch (err) {
        throw new Error(`dev wallet state ${opts.path} is not valid JSON: ${(err as Error).message}`);
      }
      if (state?.version !== 1 || typeof state.wallets !== 'object' || typeof state.invoices !== 'object') {
        throw new Error(`dev wallet state ${opts.path} has an unknown format`);
      }
      state.payments ??= {};
    }
    let changed = text === undefined;
    for (const [name, balance] of Object.entries(opts.initialBalances)) {
      if (!state.wallets[name]) {
        state.wallets[name] = { balanceMsat: balance };
        changed = true;
      }
    }
    const cutoff = Math.floor(clock() / 1000) - PRUNE_EXPIRED_AFTER_SECONDS;
    for (const [hash, inv] of Object.entries(state.invoices)) {
      if (inv.state === 'pending' && inv.expiresAt < cutoff) {
        delete state.invoices[hash];
        changed = true;
      }
    }
    const ledger = new DevLedger(opts.path, state, opts.nodeSecret, clock);
    if (changed) await ledger.file.save();
    return ledger;
  }

  private now(): number {
    return this.clock() / 1000;
  }

  wallets(): string[] {
    return Object.keys(this.state.wallets);
  }

  balance(wallet: string): number {
    const w = this.state.wallets[wallet];
    if (!w) throw fail('UNAUTHORIZED', `no wallet ${wallet}`);
    return w.balanceMsat;
  }

  invoiceState(inv: DevInvoiceRecord): 'pending' | 'settled' | 'expired' {
    if (inv.state === 'settled') return 'settled';
    return this.now() >= inv.expiresAt ? 'expired' : 'pending';
  }

  /** NIP-47 make_invoice. Params are checked as they arrive from the wire. */
  async makeInvoice(wallet: string, p: MakeInvoiceInput): Promise<DevInvoiceRecord> {
    this.balance(wallet);
    if (!isPositiveMsat(p.amount)) throw fail('OTHER', 'amount must be a positive integer number of msat');
    if (p.description !== undefined && p.description !== null && typeof p.description !== 'string') {
      throw fail('OTHER', 'description must be a string');
    }
    const description = typeof p.description === 'string' ? p.description : undefined;
    let descriptionHash: string | undefined;
    if (p.description_hash !== undefined && p.description_hash !== null && p.description_hash !== '') {
      if (typeof p.description_hash !== 'string' || !isHex64(p.description_hash.toLowerCase())) {
        throw fail('OTHER', 'description_hash must be 32 bytes of hex');
      }
      descriptionHash = p.description_hash.toLowerCase();
      if (description !== undefined && sha256Hex(description) !== descriptionHash) {
        throw fail('OTHER', 'description_hash is not the sha256 of description');
      }
    } else if (description !== undefined && Buffer.byteLength(description, 'utf8') > MAX_DESCRIPTION_BYTES) {
      throw fail('OTHER', `description is longer than ${MAX_DESCRIPTION_BYTES} bytes; send description_hash too`);
    }
    let expiry = DEFAULT_INVOICE_EXPIRY_SECONDS;
    if (p.expiry !== undefined && p.expiry !== null) {
      if (typeof p.expiry !== 'number' || !Number.isSafeInteger(p.expiry) || p.expiry <= 0 || p.expiry > MAX_EXPIRY_SECONDS) {
        throw fail('OTHER', `expiry must be an integer number of seconds in 1..${MAX_EXPIRY_SECONDS}`);
      }
      expiry = p.expiry;
    }
    const preimage = randomBytes(32).toString('hex');
    const paymentHash = sha256Hex(Buffer.from(preimage, 'hex'));
    const createdAt = Math.floor(this.now());
    const bolt11 = createBolt11({
      nodeSecret: this.nodeSecret,
      paymentHash,
      paymentSecret: randomBytes(32).toString('hex'),
      amountMsat: p.amount,
      timestamp: createdAt,
      expirySeconds: expiry,
      ...(description !== undefined ? { description } : {}),
      ...(descriptionHash !== undefined ? { descriptionHash } : {}),
    });
    const inv: DevInvoiceRecord = {
      wallet,
      bolt11,
      paymentHash,
      preimage,
      amountMsat: p.amount,
      ...(description !== undefined ? { description } : {}),
      ...(descriptionHash !== undefined ? { descriptionHash } : {}),
      createdAt,
      expiresAt: createdAt + expiry,
      state: 'pending',
    };
    this.state.invoices[paymentHash] = inv;
    try {
      await this.file.save();
    } catch (err) {
      delete this.state.invoices[paymentHash];
      throw new LightningError('INTERNAL', `could not save the invoice: ${(err as Error).message}`, { cause: err });
    }
    return inv;
  }

  /**
   * NIP-47 pay_invoice by `payer`: only invoices of this network, unpaid, unexpired, not the
   * payer's own, for at most the payer's balance. Resolves once the payment is on disk.
   */
  async payInvoice(payer: string, bolt11: unknown, amount?: unknown): Promise<{ invoice: DevInvoiceRecord; payment: DevPaymentRecord }> {
    this.balance(payer);
    if (typeof bolt11 !== 'string') throw fail('OTHER', 'invoice must be a BOLT11 string');
    let paymentHash: string;
    try {
      paymentHash = decodeBolt11(bolt11).paymentHash;
    } catch (err) {
      throw fail('OTHER', (err as Error).message);
    }
    const inv = this.state.invoices[paymentHash];
    if (!inv || inv.bolt11 !== bolt11.toLowerCase()) {
      throw fail('PAYMENT_FAILED', 'no route: the invoice was not issued by a node of this network');
    }
    if (amount !== undefined && amount !== null && amount !== inv.amountMsat) {
      throw fail('OTHER', `amount ${String(amount)} does not match the invoice amount ${inv.amountMsat} msat`);
    }
    if (inv.wallet === payer) throw fail('PAYMENT_FAILED', 'a wallet cannot pay its own invoice');
    if (inv.state === 'settled') throw fail('PAYMENT_FAILED', 'the invoice is already paid');
    if (this.invoiceState(inv) === 'expired') throw fail('PAYMENT_FAILED', 'the invoice has expired');
    const from = this.state.wallets[payer]!;
    const to = this.state.wallets[inv.wallet];
    if (!to) throw fail('PAYMENT_FAILED', 'no route to the issuing wallet');
    if (from.balanceMsat < inv.amountMsat) {
      throw fail('INSUFFICIENT_BALANCE', `balance ${from.balanceMsat} msat is less than ${inv.amountMsat} msat`);
    }
    const settledAt = Math.floor(this.now());
    from.balanceMsat -= inv.amountMsat;
    to.balanceMsat += inv.amountMsat;
    inv.state = 'settled';
    inv.settledAt = settledAt;
    inv.paidBy = payer;
    const payment: DevPaymentRecord = {
      wallet: payer,
      bolt11: inv.bolt11,
      paymentHash,
      preimage: inv.preimage,
      amountMsat: inv.amountMsat,
      feesPaidMsat: 0,
      ...(inv.description !== undefined ? { description: inv.description } : {}),
      ...(inv.descriptionHash !== undefined ? { descriptionHash: inv.descriptionHash } : {}),
      createdAt: settledAt,
      expiresAt: inv.expiresAt,
      settledAt,
    };
    this.state.payments[paymentHash] = payment;
    try {
      await this.file.save();
    } catch (err) {
      from.balanceMsat += inv.amountMsat;
      to.balanceMsat -= inv.amountMsat;
      inv.state = 'pending';
      delete inv.settledAt;
      delete inv.paidBy;
      delete this.state.payments[paymentHash];
      throw new LightningError('INTERNAL', `could not save the payment: ${(err as Error).message}`, { cause: err });
    }
    return { invoice: inv, payment };
  }

  /** NIP-47 lookup_invoice: the wallet's own invoices (incoming) and payments (outgoing). */
  lookup(wallet: string, p: { payment_hash?: unknown; invoice?: unknown }): Nip47Tx {
    this.balance(wallet);
    let hash: string | undefined;
    if (typeof p.payment_hash === 'string' && p.payment_hash !== '') {
      hash = p.payment_hash.toLowerCase();
      if (!isHex64(hash)) throw fail('OTHER', 'payment_hash must be 32 bytes of hex');
    } else if (typeof p.invoice === 'string' && p.invoice !== '') {
      try {
        hash = decodeBolt11(p.invoice).paymentHash;
      } catch (err) {
        throw fail('OTHER', (err as Error).message);
      }
    } else {
      throw fail('OTHER', 'payment_hash or invoice is required');
    }
    const inv = this.state.invoices[hash];
    if (inv && inv.wallet === wallet) return this.incomingTx(inv);
    const pay = this.state.payments[hash];
    if (pay && pay.wallet === wallet) return outgoingTx(pay);
    throw fail('NOT_FOUND', 'invoice not found');
  }

  /** NIP-47 list_transactions, newest first. */
  list(
    wallet: string,
    p: { from?: unknown; until?: unknown; limit?: unknown; offset?: unknown; unpaid?: unknown; type?: unknown },
  ): { transactions: Nip47Tx[]; total_count: number } {
    this.balance(wallet);
    const num = (v: unknown, d: number) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : d);
    const from = num(p.from, 0);
    const until = num(p.until, Math.floor(this.now()));
    const limit = Math.min(num(p.limit, 20), 100);
    const offset = num(p.offset, 0);
    const txs: Nip47Tx[] = [];
    if (p.type === undefined || p.type === 'incoming') {
      for (const inv of Object.values(this.state.invoices)) {
        if (inv.wallet !== wallet) continue;
        if (inv.state !== 'settled' && p.unpaid !== true) continue;
        txs.push(this.incomingTx(inv));
      }
    }
    if (p.type === undefined || p.type === 'outgoing') {
      for (const pay of Object.values(this.state.payments)) if (pay.wallet === wallet) txs.push(outgoingTx(pay));
    }
    const inRange = txs.filter((t) => t.created_at >= from && t.created_at <= until);
    inRange.sort((a, b) => b.created_at - a.created_at);
    const page = inRange.slice(offset, offset + limit);
    // NIP-44 encrypts at most 64 KiB and relays cap event content: a page that would not fit is
    // shortened (the client pages on with offset / total_count).
    while (page.length > 1 && JSON.stringify(page).length > MAX_LIST_JSON_BYTES) page.pop();
    return { transactions: page, total_count: inRange.length };
  }

  incomingTx(inv: DevInvoiceRecord): Nip47Tx {
    const state = this.invoiceState(inv);
    return {
      type: 'incoming',
      state,
      invoice: inv.bolt11,
      description: inv.description ?? '',
      description_hash: inv.descriptionHash ?? '',
      // The preimage of an unpaid incoming invoice stays with the wallet.
      preimage: state === 'settled' ? inv.preimage : '',
      payment_hash: inv.paymentHash,
      amount: inv.amountMsat,
      fees_paid: 0,
      created_at: inv.createdAt,
      expires_at: inv.expiresAt,
      settled_at: inv.settledAt ?? 0,
    };
  }

  /** Total msat held by all wallets: paying moves money, it never makes or burns any. */
  totalMsat(): number {
    return Object.values(this.state.wallets).reduce((s, w) => s + w.balanceMsat, 0);
  }

  /** Waits for any save in flight. */
  flush(): Promise<void> {
    return this.file.save();
  }
}

export function outgoingTx(pay: DevPaymentRecord): Nip47Tx {
  return {
    type: 'outgoing',
    state: 'settled',
    invoice: pay.bolt11,
    description: pay.description ?? '',
    description_hash: pay.descriptionHash ?? '',
    preimage: pay.preimage,
    payment_hash: pay.paymentHash,
    amount: pay.amountMsat,
    fees_paid: pay.feesPaidMsat,
    created_at: pay.createdAt,
    expires_at: pay.expiresAt,
    settled_at: pay.settledAt,
  };
}
