import { pino, type Logger } from 'pino';

export type { Logger };

/** The one logger of every app: pino JSON lines on stdout. */
export function createLogger(level: string, name: string): Logger {
  return pino({ level, name, base: { pid: process.pid } });
}
