/** Text for HTML text and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/**
 * The `<head>` of a page of ours: UTF-8, a mobile viewport, light and dark schemes, no referrer,
 * a data: favicon (the browser asks for nothing else), its one stylesheet and one module script.
 * Values are plain text; they are escaped here.
 */
export function pageHead(o: { title: string; description?: string; favicon: string; cssUrl: string; jsUrl: string }): string {
  return `<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
${o.description === undefined ? '' : `<meta name="description" content="${escapeHtml(o.description)}">\n`}<meta name="referrer" content="no-referrer">
<title>${escapeHtml(o.title)}</title>
<link rel="icon" href="${o.favicon}">
<link rel="stylesheet" href="${escapeHtml(o.cssUrl)}">
<script type="module" src="${escapeHtml(o.jsUrl)}"></script>
</head>`;
}
