// @ts-check
// Reply / quote and message search (docs/protocol.md "Reply / quote", "Search"): the state and actions behind the
// reply bar, the quote in a bubble, the message search results and the jump to a message in its conversation.
import { nextTick, reactive } from '../../vendor/vue/vue.runtime.esm-browser.prod.js';
import { api, state } from './state.js';
import { openConv } from './conversations.js';
import { hasOlder, insertMessage, loadHistory, messagesOf } from './messages.js';
import { toast } from './ui.js';

/** @typedef {import('../types.js').Message} Message */

const QUOTE_CHARS = 80; // as the server's quote (core/services/messaging.py QUOTE_CHARS)
const SEARCH_PAGE = 20;
const SEARCH_DEBOUNCE_MS = 250;

export const rs = reactive({
  /** @type {Map<string, Message>} conv -> message being answered in that conversation's composer */
  replyTo: new Map(),
  /** @type {{q: string, results: Message[], next: string | null, loading: boolean, done: boolean}} */
  search: { q: '', results: [], next: null, loading: false, done: false },
  /** @type {{conv: string, seq: number} | null} where a jump landed (marked until the search is cleared or another jump) */
  highlight: null,
});

// ---------------------------------------------------------------------------------------------- reply
/** The quote a reply carries (as the server would make it). @param {Message} msg */
export function quoteOf(msg) {
  const text = msg.body.text || msg.body.name || '';
  return { seq: msg.seq, id: msg.id, from: msg.from, kind: msg.kind, text: text.slice(0, QUOTE_CHARS) };
}

/** @param {Message} msg */
export function startReply(msg) {
  rs.replyTo.set(msg.conv, msg);
  nextTick(() => {
    const input = document.querySelector('[data-testid="composer"]');
    if (input) input.focus();
  });
}

/** @param {string} conv */
export function cancelReply(conv) {
  rs.replyTo.delete(conv);
}

/**
 * What sendText needs for the reply in `conv` ({seq, quote}), or null; taking it clears the reply bar.
 * @param {string} conv
 */
export function takeReply(conv) {
  const msg = rs.replyTo.get(conv);
  if (!msg) return null;
  rs.replyTo.delete(conv);
  return { seq: msg.seq, quote: quoteOf(msg) };
}

// ---------------------------------------------------------------------------------------------- search
/** @type {ReturnType<typeof setTimeout> | undefined} */
let searchTimer;
let searchGen = 0;

/** Debounced: the list pane calls this on every keystroke of its search box. @param {string} q */
export function searchMessages(q) {
  clearTimeout(searchTimer);
  const query = q.trim();
  rs.search.q = query;
  if (!query) {
    searchGen += 1;
    rs.highlight = null;
    Object.assign(rs.search, { results: [], next: null, loading: false, done: false });
    return;
  }
  rs.search.loading = true;
  searchTimer = setTimeout(() => fetchPage(query, null), SEARCH_DEBOUNCE_MS);
}

export function moreResults() {
  if (rs.search.next && !rs.search.loading) fetchPage(rs.search.q, rs.search.next);
}

/**
 * @param {string} query
 * @param {string | null} before the page cursor the server gave (`next`)
 */
async function fetchPage(query, before) {
  const gen = ++searchGen;
  rs.search.loading = true;
  try {
    const page = await api.request('GET', '/api/search/messages', undefined, {
      query: { q: query, before, limit: SEARCH_PAGE },
    });
    if (gen !== searchGen) return; // a newer query has started
    rs.search.results = before ? [...rs.search.results, ...page.messages] : page.messages;
    rs.search.next = page.next;
    rs.search.done = true;
  } catch (err) {
    if (gen === searchGen) toast(err.message || String(err), 'error');
  } finally {
    if (gen === searchGen) rs.search.loading = false;
  }
}

// ---------------------------------------------------------------------------------------------- jump
// Open `conv` with message `seq` loaded and scrolled into view. The stream shows one contiguous run of messages
// ending at the newest, so older pages are loaded down to the target (pages of the server's maximum size).
/**
 * @param {string} conv
 * @param {number} seq
 */
export async function jumpTo(conv, seq) {
  if (state.active !== conv) openConv(conv);
  await loadHistory(conv);
  try {
    const c = state.convs.get(conv);
    for (let guard = 0; guard < 500; guard += 1) {
      const msgs = messagesOf(conv);
      const min = msgs.length ? msgs[0].seq : (c ? c.lastSeq + 1 : 1);
      if (min <= Math.max(seq - 5, 1) || !hasOlder(conv)) break;
      const page = await api.request('GET', `/api/conversations/${conv}/messages`, undefined, {
        query: { before: min, limit: state.config.history_page_max || 200 },
      });
      if (!page.messages.length) break;
      for (const msg of page.messages) insertMessage(msg);
    }
  } catch (err) {
    toast(err.message || String(err), 'error');
    return;
  }
  rs.highlight = { conv, seq };
  // After the stream has rendered (and run its own stick-to-bottom pass): centre the target.
  await nextTick();
  requestAnimationFrame(() => {
    const el = document.querySelector(`[data-testid="stream"] [data-seq="${seq}"]`);
    if (el) el.scrollIntoView({ block: 'center' });
  });
}
