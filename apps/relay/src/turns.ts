/**
 * Client messages processed in bounded turns, fairly between connections (issue 12).
 *
 * A flood's opening burst (thousands of EVENTs parsed, hashed and refused within a second) would
 * otherwise hold the event loop for hundreds of milliseconds at a time: Postgres's replies to an
 * honest write's transaction, and the honest client's next frame, wait behind it. Here a message
 * runs at once while the current turn of the event loop has spent less than `turnMs` on messages,
 * and past that still one per connection (so a client writing one message at a time never waits);
 * a connection's further messages wait in its queue, and the queues are drained one message per
 * connection in turn (round robin), `turnMs` per `setImmediate`, so I/O is read between turns and a
 * connection with one message waiting is served in the next turn however long another's queue is.
 * A connection's messages keep their order: one that has messages waiting queues behind them.
 * The queues are bounded in bytes, per connection and in all: `offer` says when a message does not
 * fit, and its caller refuses it.
 */

export type TurnOptions<K> = {
  /** What a turn may spend on messages before the rest wait for the next one. */
  turnMs: number;
  /** Bytes (UTF-16 units of the text) one connection may have waiting. */
  maxBytesPerKey: number;
  /** Bytes waiting in all. */
  maxBytes: number;
  /** Handles one message; must not throw (a throw is reported to `onError` and the drain goes on). */
  run: (key: K, text: string) => void;
  /** Whether the key's messages are still wanted (a closed connection's are dropped unrun). */
  live: (key: K) => boolean;
  onError?: (err: unknown) => void;
  clock?: () => number;
  /** How the end of the turn is awaited (`setImmediate`: after this turn's I/O callbacks). */
  schedule?: (f: () => void) => void;
};

type Waiting = { texts: string[]; head: number; bytes: number };

export class TurnQueue<K> {
  private readonly waiting = new Map<K, Waiting>();
  /** Keys with messages waiting, in the order they are served (each at most once). */
  private ring: K[] = [];
  private bytes = 0;
  /** Keys that had a message run at once after the turn's time was spent (one each per turn). */
  private readonly ranPastTime = new Set<K>();
  /** When the current turn's first message ran; undefined between turns. */
  private turnStart: number | undefined;
  private scheduled = false;
  private readonly clock: () => number;
  private readonly schedule: (f: () => void) => void;

  constructor(private readonly opts: TurnOptions<K>) {
    this.clock = opts.clock ?? performance.now.bind(performance);
    this.schedule = opts.schedule ?? setImmediate;
  }

  /** Bytes waiting in all. */
  get waitingBytes(): number {
    return this.bytes;
  }

  /**
   * Runs the message now, or queues it behind its connection's waiting ones; false when it does
   * not fit in the bounds (it is neither run nor queued).
   */
  offer(key: K, text: string): boolean {
    const w = this.waiting.get(key);
    if (!w && (this.turnHasTime() || !this.ranPastTime.has(key))) {
      // Past the turn's time, still one message per connection at once: a client sending one
      // message at a time (a person) never waits in a queue, only a burst's further ones do.
      if (this.turnStart !== undefined && this.clock() - this.turnStart >= this.opts.turnMs) this.ranPastTime.add(key);
      this.runOne(key, text);
      return true;
    }
    const size = text.length;
    if (this.bytes + size > this.opts.maxBytes || (w?.bytes ?? 0) + size > this.opts.maxBytesPerKey) return false;
    if (w) {
      w.texts.push(text);
      w.bytes += size;
    } else {
      this.waiting.set(key, { texts: [text], head: 0, bytes: size });
      this.ring.push(key);
    }
    this.bytes += size;
    this.endTurnLater();
    return true;
  }

  /** Whether a message may run in this turn, starting the turn's clock with the first. */
  private turnHasTime(): boolean {
    const now = this.clock();
    if (this.turnStart === undefined) {
      this.turnStart = now;
      this.endTurnLater();
      return true;
    }
    return now - this.turnStart < this.opts.turnMs;
  }

  private endTurnLater(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.schedule(() => this.endTurn());
  }

  /** The turn's end: the waiting messages get a turn of their own, then the next turn starts afresh. */
  private endTurn(): void {
    this.scheduled = false;
    this.turnStart = undefined;
    this.ranPastTime.clear();
    if (this.ring.length === 0) return;
    const start = this.clock();
    let served = 0;
    const ring = this.ring;
    // One message per key in ring order; a key with more goes to the back.
    while (served < ring.length && this.clock() - start < this.opts.turnMs) {
      const key = ring[served++];
      const w = this.waiting.get(key)!;
      if (!this.opts.live(key)) {
        this.forget(key, w);
        continue;
      }
      const text = w.texts[w.head];
      w.texts[w.head++] = '';
      w.bytes -= text.length;
      this.bytes -= text.length;
      if (w.head === w.texts.length) this.waiting.delete(key);
      else {
        compact(w);
        ring.push(key);
      }
      this.runOne(key, text);
    }
    this.ring = ring.slice(served);
    if (this.ring.length > 0) this.endTurnLater();
  }

  private forget(key: K, w: Waiting): void {
    this.bytes -= w.bytes;
    this.waiting.delete(key);
  }

  private runOne(key: K, text: string): void {
    try {
      this.opts.run(key, text);
    } catch (err) {
      this.opts.onError?.(err);
    }
  }
}

/** Drops the served head of a queue once it is most of the array. */
function compact(w: Waiting): void {
  if (w.head > 64 && w.head * 2 > w.texts.length) {
    w.texts = w.texts.slice(w.head);
    w.head = 0;
  }
}
