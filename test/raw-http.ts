import { connect } from 'node:net';

export type RawAnswer = {
  /** Every byte the server sent. */
  data: Buffer;
  /** Status codes of every response in `data` (interim 1xx included). */
  statuses: number[];
  /** The server ended or reset the connection (as opposed to us giving up waiting). */
  closedByServer: boolean;
};

/** Status lines at the start of the stream or after a CRLF (responses on one connection). */
export function statusesOf(data: Buffer): number[] {
  const text = data.toString('latin1');
  return [...text.matchAll(/(?:^|\r\n)HTTP\/\d(?:\.\d)? (\d{3})/g)].map((m) => Number(m[1]));
}

/**
 * Writes raw bytes to host:port over TCP and collects what comes back: until the server closes
 * the connection, or `quietMs` after the last byte once something arrived, or `timeoutMs`.
 * Nothing is parsed or normalised on the way out, unlike fetch.
 */
export function rawHttp(
  port: number,
  bytes: Buffer | string,
  opts: { quietMs?: number; timeoutMs?: number; halfClose?: boolean } = {},
): Promise<RawAnswer> {
  const quietMs = opts.quietMs ?? 250;
  const timeoutMs = opts.timeoutMs ?? 2000;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    let quiet: NodeJS.Timeout | undefined;
    const s = connect(port, '127.0.0.1');
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(quiet);
      clearTimeout(overall);
      s.destroy();
      const data = Buffer.concat(chunks);
      resolve({ data, statuses: statusesOf(data), closedByServer });
    };
    const overall = setTimeout(() => finish(false), timeoutMs);
    s.on('connect', () => {
      s.write(bytes);
      if (opts.halfClose) s.end();
    });
    s.on('data', (d) => {
      chunks.push(d);
      clearTimeout(quiet);
      quiet = setTimeout(() => finish(false), quietMs);
    });
    s.on('end', () => finish(true));
    s.on('close', () => finish(true));
    // A reset (the server closed with our unread bytes in its buffer) is the server's close too.
    s.on('error', () => finish(true));
  });
}

/** One request, with `Connection: close` so the server ends the connection after answering. */
export function rawRequest(port: number, requestLine: string, headers: string[] = [], body = ''): Promise<RawAnswer> {
  const head = [requestLine, 'Host: 127.0.0.1', ...headers, 'Connection: close'].join('\r\n');
  return rawHttp(port, Buffer.concat([Buffer.from(head + '\r\n\r\n', 'latin1'), Buffer.from(body)]));
}

/** The JSON body of a single, Content-Length framed response. */
export function jsonBody(a: RawAnswer): unknown {
  const text = a.data.toString('utf8');
  return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4));
}
