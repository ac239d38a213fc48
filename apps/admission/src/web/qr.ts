import qrcode from 'qrcode-generator';

/**
 * A BOLT11 invoice as an SVG QR code. The payload is upper-cased ("LIGHTNING:LNBC...") so it fits the
 * QR alphanumeric mode: a smaller, easier-to-scan code; wallets accept either case (bech32).
 * Drawn as one <path> so it stays crisp at any size.
 */
export function qrSvg(bolt11: string, label: string): SVGSVGElement {
  const qr = qrcode(0, 'M');
  qr.addData(`lightning:${bolt11}`.toUpperCase(), 'Alphanumeric');
  qr.make();
  const n = qr.getModuleCount();
  const margin = 4;
  const size = n + margin * 2;
  let d = '';
  for (let r = 0; r < n; r++) {
    let run = 0;
    for (let c = 0; c <= n; c++) {
      if (c < n && qr.isDark(r, c)) {
        run++;
      } else if (run > 0) {
        d += `M${c - run + margin} ${r + margin}h${run}v1h-${run}z`;
        run = 0;
      }
    }
  }
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${size} ${size}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.setAttribute('shape-rendering', 'crispEdges');
  svg.setAttribute('data-testid', 'qr');
  svg.setAttribute('data-modules', String(n));
  const bg = document.createElementNS(NS, 'rect');
  bg.setAttribute('width', String(size));
  bg.setAttribute('height', String(size));
  bg.setAttribute('fill', '#fff');
  const path = document.createElementNS(NS, 'path');
  path.setAttribute('d', d);
  path.setAttribute('fill', '#000');
  svg.append(bg, path);
  return svg;
}
