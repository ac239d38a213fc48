import uWS from 'uWebSockets.js';

/**
 * The package silently falls back to a `ws`-based emulation when its native build does not
 * load; that emulation cannot carry a relay's load, so refuse to start instead.
 */
export function loadUws(): typeof uWS {
  const native = typeof uWS.App === 'function' && Function.prototype.toString.call(uWS.App).includes('[native code]');
  if (!native) {
    throw new Error(
      'uWebSockets.js native build did not load (the JavaScript fallback is not supported). ' +
        `Use Node ${process.versions.node.split('.')[0]} on linux/darwin x64/arm64 with a supported ABI ` +
        `(this process has ABI ${process.versions.modules}), and unset UWS_USE_FALLBACK.`,
    );
  }
  return uWS;
}

export type { WebSocket, HttpResponse, HttpRequest, TemplatedApp, us_listen_socket } from 'uWebSockets.js';
