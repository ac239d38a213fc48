import type { ServerResponse } from 'node:http';
import { INVOICES_CHANNEL } from '@paidrelay/bus';
import type { InvoiceView } from './api-types.ts';
import type { AdmissionContext } from './context.ts';

/**
 * Live invoice status for pay pages (Server-Sent Events). Status changes arrive on the bus,
 * so a page connected to one admission replica sees a payment settled by another.
 */
export class InvoiceStreams {
  private streams = new Map<string, Set<ServerResponse>>();
  private heartbeat: NodeJS.Timeout;

  constructor(ctx: AdmissionContext) {
    void ctx.bus.subscribe(INVOICES_CHANNEL, (msg) => {
      try {
        const inv = JSON.parse(msg) as InvoiceView;
        for (const res of this.streams.get(inv.id) ?? []) this.push(res, inv);
      } catch (err) {
        ctx.log.warn({ err }, 'invoice stream: bad bus message');
      }
    });
    this.heartbeat = setInterval(() => {
      for (const set of this.streams.values()) for (const res of set) res.write(': keep-alive\n\n');
    }, 15_000);
    this.heartbeat.unref();
  }

  open(res: ServerResponse, inv: InvoiceView, refresh: () => Promise<InvoiceView | undefined>): void {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
      'Access-Control-Allow-Origin': '*',
    });
    this.push(res, inv);
    if (inv.status !== 'pending') return;
    let set = this.streams.get(inv.id);
    if (!set) this.streams.set(inv.id, (set = new Set()));
    set.add(res);
    // Tell the page when the invoice expires, even if nothing else happens.
    const expiry = setTimeout(
      () => void refresh().then((fresh) => fresh && this.push(res, fresh)),
      Math.max(0, inv.expires_at * 1000 - Date.now()) + 1000,
    );
    res.on('close', () => {
      clearTimeout(expiry);
      set!.delete(res);
      if (set!.size === 0) this.streams.delete(inv.id);
    });
  }

  private push(res: ServerResponse, inv: InvoiceView): void {
    res.write(`event: status\ndata: ${JSON.stringify(inv)}\n\n`);
    if (inv.status !== 'pending') res.end();
  }

  close(): void {
    clearInterval(this.heartbeat);
    for (const set of this.streams.values()) for (const res of set) res.end();
    this.streams.clear();
  }
}
