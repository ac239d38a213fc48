import type { Logger } from 'pino';

export type ProcessHandlerOptions = {
  /** How long `onFatal` may take before the process exits anyway, ms (default 5000). */
  deadlineMs?: number;
  /** Replaces process.exit (tests). */
  exit?: (code: number) => void;
};

export type FatalKind = 'uncaughtException' | 'unhandledRejection';

function describe(reason: unknown): string {
  try {
    return typeof reason === 'string' ? reason : (JSON.stringify(reason) ?? String(reason));
  } catch {
    return String(reason);
  }
}

/**
 * The process-level rule of every app. After an `uncaughtException` or an `unhandledRejection`
 * the process can no longer be trusted (a callback died halfway, a promise chain was lost, a
 * connection or a lock may be left in any state), so both are handled alike:
 *
 * 1. logged at `fatal` with the error and its stack (`{ err }`, one JSON line);
 * 2. `onFatal()` (stop accepting, finish the writes in flight, close) is given `deadlineMs`;
 * 3. the process exits with code 1, whether the close finished, failed or ran out of time,
 *    so the orchestrator (Kubernetes) restarts it. Never a silent, half-dead process.
 *
 * A second fatal error while closing is logged and changes nothing (the deadline stands).
 * Returns a function that removes the handlers.
 */
export function installProcessHandlers(
  log: Logger,
  onFatal?: (kind: FatalKind) => Promise<unknown> | unknown,
  opts: ProcessHandlerOptions = {},
): () => void {
  const deadlineMs = opts.deadlineMs ?? 5000;
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  let dying = false;
  let exited = false;

  const finish = () => {
    if (exited) return;
    exited = true;
    try {
      log.flush();
    } catch {
      // nothing more can be done about a broken log stream
    }
    exit(1);
  };

  const fatal = (kind: FatalKind, reason: unknown) => {
    const err = reason instanceof Error ? reason : new Error(`${kind} with a non-error value: ${describe(reason)}`);
    if (dying) {
      log.fatal({ err, kind }, `${kind} while closing after a fatal error`);
      return;
    }
    dying = true;
    // Whatever happens next (even the event loop running dry), the exit code is not 0.
    process.exitCode = 1;
    log.fatal({ err, kind }, `${kind}: the process cannot be trusted any more, closing and exiting`);
    // Not unref'd: the process stays up until it exits on purpose.
    const timer = setTimeout(() => {
      log.fatal({ deadlineMs }, 'closing after a fatal error took too long: exiting');
      finish();
    }, deadlineMs);
    void Promise.resolve()
      .then(() => onFatal?.(kind))
      .then(
        () => log.info('closed after a fatal error: exiting'),
        (closeErr: unknown) => log.error({ err: closeErr }, 'closing after a fatal error failed: exiting'),
      )
      .finally(() => {
        clearTimeout(timer);
        finish();
      });
  };

  const onException = (err: unknown) => fatal('uncaughtException', err);
  const onRejection = (reason: unknown) => fatal('unhandledRejection', reason);
  process.on('uncaughtException', onException);
  process.on('unhandledRejection', onRejection);
  return () => {
    process.off('uncaughtException', onException);
    process.off('unhandledRejection', onRejection);
  };
}

/**
 * SIGTERM and SIGINT: `close()` once (stop accepting, finish the writes in flight), then exit
 * with 0, unless a fatal error set process.exitCode meanwhile. `on`, not `once`: a wrapper
 * (tsx, a shell) may repeat the signal while the process drains.
 */
export function stopOnSignals(log: Logger, close: () => Promise<unknown>): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    await close();
    process.exit();
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
