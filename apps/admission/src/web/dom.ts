/** The pay page's DOM helpers: elements by id, element building, visibility, field errors. */

export function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`pay page: missing #${id}`);
  return el;
}
export const $input = (id: string) => $(id) as HTMLInputElement;
export const $button = (id: string) => $(id) as HTMLButtonElement;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | undefined> = {},
  ...children: Array<Node | string | null | undefined | false>
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k === 'class') el.className = String(v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

export function show(el: HTMLElement, on: boolean): void {
  el.hidden = !on;
}

export function setFieldError(input: HTMLInputElement | null, errorEl: HTMLElement, message: string | null): void {
  errorEl.textContent = message ?? '';
  show(errorEl, !!message);
  if (input) {
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
}
