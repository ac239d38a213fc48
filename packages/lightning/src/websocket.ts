import WebSocket from 'ws';

/**
 * @getalby/sdk (and the nostr-tools it bundles) opens relay connections with the global
 * `WebSocket`. Node 22 has one; Node 20 has it only behind --experimental-websocket, so
 * we install the `ws` implementation when it is missing. Imported for its side effect
 * before the SDK is used; calling it again is harmless.
 */
export function ensureGlobalWebSocket(): void {
  const g = globalThis as { WebSocket?: unknown };
  if (typeof g.WebSocket === 'undefined') g.WebSocket = WebSocket;
}

ensureGlobalWebSocket();
