import { randomUUID } from 'node:crypto';
import type { Bus, BusHandler } from './bus.ts';

/** One process, no Redis: messages go to this process's own subscribers. */
export class MemoryBus implements Bus {
  readonly id = randomUUID();
  readonly kind = 'memory' as const;
  private handlers = new Map<string, BusHandler[]>();

  publish(channel: string, message: string): void {
    const list = this.handlers.get(channel);
    if (!list) return;
    queueMicrotask(() => {
      for (const h of list) h(message, this.id);
    });
  }

  async subscribe(channel: string, handler: BusHandler): Promise<void> {
    const list = this.handlers.get(channel) ?? [];
    list.push(handler);
    this.handlers.set(channel, list);
  }

  healthy(): boolean {
    return true;
  }

  /** Nothing is ever lost within one process. */
  onLoss(_listener: () => void): void {}

  async close(): Promise<void> {
    this.handlers.clear();
  }
}
