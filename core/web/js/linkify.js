// @ts-check
// Splits message text into text and link segments. Links become anchor elements built by the renderer from a
// parsed http(s) URL (never markup): the text itself is always rendered as text.

const URL_RE = /\bhttps?:\/\/[^\s<>"'`\u3000-\u303f\uff00-\uffef]+/gi;
const TRAILING = /[.,;:!?)\]}'"，。；：！？）】」』]+$/;

// A safe href for a candidate, or null: only absolute http(s) URLs that the URL parser accepts.
export function safeHref(candidate) {
  let url;
  try {
    url = new URL(candidate);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  if (!url.hostname) return null;
  return url.href;
}

export function linkify(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    let raw = m[0];
    const trail = raw.match(TRAILING);
    if (trail) raw = raw.slice(0, raw.length - trail[0].length);
    const href = raw ? safeHref(raw) : null;
    if (!href) continue;
    if (m.index > last) out.push({ text: text.slice(last, m.index) });
    out.push({ text: raw, href });
    last = m.index + raw.length;
  }
  if (last < text.length) out.push({ text: text.slice(last) });
  return out;
}
