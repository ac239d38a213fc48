import '../websocket.ts';
import { createECDH } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  NWCWalletService,
  NWCWalletServiceKeyPair,
  type NWCWalletServiceRequestHandler,
  type NWCWalletServiceResponse,
  type Nip47EncryptionType,
  type Nip47NotificationType,
  type Nip47SingleMethod,
} from '@getalby/sdk/nwc';
import { getPublicKey } from 'nostr-tools/pure';
import { connectNwc } from '../nwc.ts';
import { instrumentPool, publishStrict, type InstrumentedPool } from '../pool.ts';
import { LightningError, silentLog, type LightningBackend, type Log } from '../types.ts';
import { errorMessage } from '../util.ts';
import { nowSeconds } from '@paidrelay/nostr';
import { writeFileAtomic } from './atomic.ts';
import { DevLedger, outgoingTx, type Nip47Tx } from './ledger.ts';
import { loadOrCreateKeys } from './keys.ts';

export type DevWalletName = 'relay' | 'payer';

type WalletSpec = {
  methods: Nip47SingleMethod[];
  notifications: Nip47NotificationType[];
  initialBalanceMsat: number;
};

/** The payer starts with this much: 100,000 sat. */
export const DEFAULT_PAYER_BALANCE_MSAT = 100_000_000;

const WALLET_SPECS = (payerBalanceMsat: number): Record<DevWalletName, WalletSpec> => ({
  // The relay operator's wallet: it is paid, it never pays.
  relay: {
    methods: ['get_info', 'get_balance', 'make_invoice', 'lookup_invoice', 'list_transactions'],
    notifications: ['payment_received'],
    initialBalanceMsat: 0,
  },
  // A user's wallet that pays invoices (and may issue its own).
  payer: {
    methods: ['get_info', 'get_balance', 'pay_invoice', 'make_invoice', 'lookup_invoice', 'list_transactions'],
    notifications: ['payment_received', 'payment_sent'],
    initialBalanceMsat: payerBalanceMsat,
  },
});

const REGTEST_GENESIS = '0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206';

/** Files the dev network keeps under `${dataDir}/dev-wallet/`. */
export const DEV_WALLET_FILES = {
  keys: 'keys.json',
  state: 'state.json',
  payerNwc: 'payer.nwc',
  relayNwc: 'relay.nwc',
} as const;

export type DevLightningNetworkOptions = {
  /** The Nostr relay the wallet services listen on (our own relay). */
  relayUrl: string;
  /** State goes to `${dataDir}/dev-wallet/`. */
  dataDir: string;
  logger?: Log;
  /** Balance of a new payer wallet, msat. */
  payerBalanceMsat?: number;
  /** Refuse to start (default: NODE_ENV === 'production'). */
  production?: boolean;
  /** ms clock, for tests. */
  clock?: () => number;
};

type RunningWallet = {
  name: DevWalletName;
  spec: WalletSpec;
  keypair: NWCWalletServiceKeyPair;
  service: NWCWalletService;
  pool: InstrumentedPool;
  unsubscribe?: () => void;
  nwc: string;
  /** Connections of the request subscription so far (the first one is at start). */
  connects: number;
};

/**
 * The dev Lightning network: a simulated network inside the project, for development and
 * tests only. One real NIP-47 wallet service per wallet (@getalby/sdk NWCWalletService) on
 * the given relay, real signed BOLT11 invoices (regtest), balances and invoices kept in a
 * JSON file that survives restarts.
 */
export class DevLightningNetwork {
  /** Connection string of the relay operator's wallet (make_invoice, lookup_invoice, notifications). */
  readonly relayWalletNwc: string;
  /** Connection string of the payer wallet (pay_invoice, get_balance), also in `${dataDir}/dev-wallet/payer.nwc`. */
  readonly payerWalletNwc: string;
  /** Compressed secp256k1 pubkey of the dev node: the payee of every invoice. */
  readonly nodePubkey: string;
  readonly dir: string;

  private closed = false;
  private readonly inflight = new Set<Promise<unknown>>();

  private constructor(
    private readonly relayUrl: string,
    private readonly ledger: DevLedger,
    private readonly wallets: Map<DevWalletName, RunningWallet>,
    nodePubkey: string,
    dir: string,
    private readonly log: Log,
  ) {
    this.relayWalletNwc = wallets.get('relay')!.nwc;
    this.payerWalletNwc = wallets.get('payer')!.nwc;
    this.nodePubkey = nodePubkey;
    this.dir = dir;
  }

  /**
   * The Nostr keys of every dev wallet (service and client), created on first use: the relay
   * lets exactly these keys' NIP-47 traffic through its payment gate, so it needs them before
   * the network connects to it.
   */
  static async walletPubkeys(dataDir: string): Promise<string[]> {
    const dir = join(dataDir, 'dev-wallet');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const keys = await loadOrCreateKeys(join(dir, DEV_WALLET_FILES.keys), Object.keys(WALLET_SPECS(0)));
    return Object.values(keys.wallets).flatMap((k) => [k.serviceSecret, k.clientSecret].map((s) => getPublicKey(Buffer.from(s, 'hex'))));
  }

  static async start(opts: DevLightningNetworkOptions): Promise<DevLightningNetwork> {
    const production = opts.production ?? process.env.NODE_ENV === 'production';
    if (production) {
      throw new Error('the dev Lightning network is for development and tests only; configure a real NWC wallet in production');
    }
    let relayUrl: URL;
    try {
      relayUrl = new URL(opts.relayUrl);
    } catch {
      throw new Error(`relayUrl is not a URL: ${opts.relayUrl}`);
    }
    if (relayUrl.protocol !== 'ws:' && relayUrl.protocol !== 'wss:') throw new Error(`relayUrl must be ws:// or wss://: ${opts.relayUrl}`);
    const log = opts.logger ?? silentLog;
    const dir = join(opts.dataDir, 'dev-wallet');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const specs = WALLET_SPECS(opts.payerBalanceMsat ?? DEFAULT_PAYER_BALANCE_MSAT);
    const names = Object.keys(specs) as DevWalletName[];
    const keys = await loadOrCreateKeys(join(dir, DEV_WALLET_FILES.keys), names);
    const ledger = await DevLedger.open({
      path: join(dir, DEV_WALLET_FILES.state),
      nodeSecret: keys.nodeSecret,
      initialBalances: Object.fromEntries(names.map((n) => [n, specs[n].initialBalanceMsat])),
      ...(opts.clock ? { clock: opts.clock } : {}),
    });
    const ecdh = createECDH('secp256k1');
    ecdh.setPrivateKey(Buffer.from(keys.nodeSecret, 'hex'));
    const nodePubkey = ecdh.getPublicKey('hex', 'compressed');

    const wallets = new Map<DevWalletName, RunningWallet>();
    let net: DevLightningNetwork | undefined;
    for (const name of names) {
      const k = keys.wallets[name]!;
      const clientPubkey = getPublicKey(Buffer.from(k.clientSecret, 'hex'));
      const keypair = new NWCWalletServiceKeyPair(k.serviceSecret, clientPubkey);
      const service = new NWCWalletService({ relayUrls: [opts.relayUrl] });
      // Requests older than this start are not ours to execute (see instrumentPool).
      const startedAt = nowSeconds();
      const nwc = `nostr+walletconnect://${keypair.walletPubkey}?relay=${encodeURIComponent(opts.relayUrl)}&secret=${k.clientSecret}`;
      const w: RunningWallet = {
        name,
        spec: specs[name],
        keypair,
        service,
        pool: undefined as unknown as InstrumentedPool,
        nwc,
        connects: 0,
      };
      w.pool = instrumentPool(service.pool, {
        log,
        since: () => startedAt - 10,
        swallowPublishErrors: true,
        // After a reconnection, publish the info event again: the relay may have lost it.
        onconnect: () => {
          if (++w.connects > 1) net?.republishInfo(w);
        },
      });
      wallets.set(name, w);
    }
    net = new DevLightningNetwork(opts.relayUrl, ledger, wallets, nodePubkey, dir, log);
    try {
      await Promise.all([...wallets.values()].map((w) => net.startWallet(w)));
      await writeFileAtomic(join(dir, DEV_WALLET_FILES.payerNwc), net.payerWalletNwc + '\n', 0o600);
      await writeFileAtomic(join(dir, DEV_WALLET_FILES.relayNwc), net.relayWalletNwc + '\n', 0o600);
    } catch (err) {
      await net.close();
      throw err;
    }
    log.info({ relayUrl: opts.relayUrl, dir, node: nodePubkey }, 'dev Lightning network started');
    return net;
  }

  private async startWallet(w: RunningWallet): Promise<void> {
    try {
      w.unsubscribe = await w.service.subscribe(w.keypair, this.handlerFor(w));
    } catch (err) {
      throw new Error(`dev wallet ${w.name}: cannot connect to the relay ${this.relayUrl}: ${errorMessage(err)}`);
    }
    await w.pool.ready((f) => f.kinds?.includes(23194) === true);
    try {
      await this.publishInfo(w);
    } catch (err) {
      throw new Error(`dev wallet ${w.name}: could not publish its NIP-47 info event: ${errorMessage(err)}`);
    }
  }

  /** NIP-47 info event (replaceable): what this connection may do, and how it encrypts. */
  private async publishInfo(w: RunningWallet): Promise<void> {
    const info = await w.service.signEvent(
      {
        kind: 13194,
        created_at: nowSeconds(),
        tags: [
          ['encryption', 'nip44_v2 nip04'],
          ['notifications', w.spec.notifications.join(' ')],
        ],
        content: [...w.spec.methods, 'notifications'].join(' '),
      },
      w.keypair.walletSecret,
    );
    await publishStrict(w.pool, [this.relayUrl], info);
  }

  private republishInfo(w: RunningWallet): void {
    if (this.closed) return;
    this.log.info({ wallet: w.name }, 'reconnected to the relay; publishing the info event again');
    this.track(
      this.publishInfo(w).catch((err: unknown) => this.log.warn({ wallet: w.name, err }, 'could not publish the info event again')),
    );
  }

  /** Balance of a dev wallet in msat (tests and the dev console). */
  balanceMsat(wallet: DevWalletName): number {
    return this.ledger.balance(wallet);
  }

  /** A backend on the relay operator's wallet, through NWC like production, reported as kind 'dev'. */
  connectRelayWallet(opts: { logger?: Log } = {}): Promise<LightningBackend> {
    return connectNwc(this.relayWalletNwc, { kind: 'dev', ...(opts.logger ? { logger: opts.logger } : {}) });
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p)).catch(() => {});
    return p;
  }

  private handlerFor(w: RunningWallet): NWCWalletServiceRequestHandler {
    const run = (method: Nip47SingleMethod, fn: () => unknown): Promise<NWCWalletServiceResponse<never>> =>
      this.track(this.run(w, method, fn));
    const ledger = this.ledger;
    return {
      getInfo: () =>
        run('get_info', () => ({
          alias: `paidrelay-dev-${w.name}`,
          color: '#f7931a',
          pubkey: this.nodePubkey,
          network: 'regtest',
          block_height: 0,
          block_hash: REGTEST_GENESIS,
          methods: w.spec.methods,
          notifications: w.spec.notifications,
        })),
      getBalance: () => run('get_balance', () => ({ balance: ledger.balance(w.name) })),
      makeInvoice: (req) => run('make_invoice', async () => ledger.incomingTx(await ledger.makeInvoice(w.name, req))),
      lookupInvoice: (req) => run('lookup_invoice', () => ledger.lookup(w.name, req)),
      listTransactions: (req) => run('list_transactions', () => ledger.list(w.name, req)),
      payInvoice: (req) =>
        run('pay_invoice', async () => {
          const { invoice, payment } = await ledger.payInvoice(w.name, req.invoice, req.amount);
          this.log.info({ from: w.name, to: invoice.wallet, hash: invoice.paymentHash, msat: invoice.amountMsat }, 'dev payment settled');
          const issuer = this.wallets.get(invoice.wallet as DevWalletName);
          if (issuer) this.notify(issuer, 'payment_received', ledger.incomingTx(invoice));
          this.notify(w, 'payment_sent', outgoingTx(payment));
          return { preimage: payment.preimage, fees_paid: payment.feesPaidMsat };
        }),
      payKeysend: () => run('pay_keysend', () => undefined),
      signMessage: () => run('sign_message', () => undefined),
    };
  }

  private async run(w: RunningWallet, method: Nip47SingleMethod, fn: () => unknown): Promise<NWCWalletServiceResponse<never>> {
    // NIP-47: `error` is null on success and `result` is null on error (the SDK spreads both into the reply).
    const error = (code: string, message: string) => ({ result: null as never, error: { code, message } });
    if (this.closed) return error('INTERNAL', 'the wallet service is shutting down');
    if (!w.spec.methods.includes(method)) {
      if (method === 'pay_keysend' || method === 'sign_message') return error('NOT_IMPLEMENTED', `${method} is not implemented`);
      return error('RESTRICTED', `this connection may not use ${method}`);
    }
    try {
      const result = await fn();
      this.log.debug({ wallet: w.name, method }, 'nip47 request served');
      return { result: result as never, error: null as never };
    } catch (err) {
      if (err instanceof LightningError) {
        this.log.debug({ wallet: w.name, method, code: err.code, err: err.message }, 'nip47 request refused');
        return error(err.code, err.message);
      }
      this.log.error({ wallet: w.name, method, err }, 'nip47 request failed');
      return error('INTERNAL', errorMessage(err));
    }
  }

  /** NIP-47 notification to the wallet's client: kind 23196 (NIP-04) and 23197 (NIP-44). */
  private notify(w: RunningWallet, type: Nip47NotificationType, tx: Nip47Tx): void {
    if (!w.spec.notifications.includes(type)) return;
    const content = JSON.stringify({ notification_type: type, notification: tx });
    const send = async (kind: 23196 | 23197, enc: Nip47EncryptionType) => {
      const ev = await w.service.signEvent(
        {
          kind,
          created_at: nowSeconds(),
          tags: [['p', w.keypair.clientPubkey]],
          content: (await w.service.encrypt(w.keypair, content, enc)) as string,
        },
        w.keypair.walletSecret,
      );
      await publishStrict(w.pool, [this.relayUrl], ev);
    };
    for (const [kind, enc] of [
      [23196, 'nip04'],
      [23197, 'nip44_v2'],
    ] as const) {
      this.track(
        send(kind, enc).catch((err: unknown) =>
          this.log.warn({ wallet: w.name, type, kind, hash: tx.payment_hash, err }, 'notification not delivered'),
        ),
      );
    }
  }

  /** Stops the wallet services; everything already answered is on disk. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.wallets.values()) w.unsubscribe?.();
    await Promise.allSettled([...this.inflight]);
    for (const w of this.wallets.values()) w.service.close();
    await this.ledger.flush().catch(() => {});
  }
}
