// @ts-check
// Reply / quote pieces of the chat (quote in a bubble, reply button, reply bar over the composer) and the message
// search results of the list pane's search box.
import { defineComponent, watch } from '../../vendor/vue/vue.runtime.esm-browser.prod.js';
import { listTime } from '../format.js';
import { html } from '../html.js';
import { t } from '../i18n.js';
import { icon } from '../icons.js';
import {
  cancelReply, convTitle, jumpTo, moreResults, rs, searchMessages, startReply, state, userName,
} from '../store.js';

function quoteText(q) {
  if (q.kind === 'image' && !q.text) return t('image');
  return q.text || '';
}

// The quoted message inside a reply's bubble; a click jumps to the original.
export function quoteBlock(msg) {
  const q = msg.quote;
  if (!q) return null;
  if (q.recalled || q.unavailable) {
    return html`<div class="quote gone" data-testid="quote" data-state=${q.recalled ? 'recalled' : 'unavailable'}>
      ${q.recalled ? t('quoteRecalled') : t('quoteUnavailable')}</div>`;
  }
  return html`<button class="quote" data-testid="quote" data-state="shown" onClick=${() => jumpTo(msg.conv, q.seq)}>
    <span class="quote-from">${userName(q.from)}</span><span class="quote-text">${quoteText(q)}</span></button>`;
}

export function replyButton(msg) {
  return html`<button class="recall-btn reply-btn" data-testid="reply" title=${t('reply')} onClick=${() => startReply(msg)}>
    ${icon('reply')}<span>${t('reply')}</span></button>`;
}

export function isHighlighted(msg) {
  return !!rs.highlight && rs.highlight.conv === msg.conv && rs.highlight.seq === msg.seq;
}

// Above the composer while a reply is being written.
export function replyBar(conv) {
  const msg = rs.replyTo.get(conv);
  if (!msg) return null;
  const q = { text: msg.body.text || msg.body.name || '', kind: msg.kind };
  return html`<div class="reply-bar" data-testid="reply-bar">
    <div class="reply-bar-main"><span class="quote-from">${t('replyingTo', { name: userName(msg.from) })}</span>
      <span class="quote-text">${quoteText(q)}</span></div>
    <button class="icon-btn" data-testid="cancel-reply" aria-label=${t('cancelReply')} title=${t('cancelReply')}
      onClick=${() => cancelReply(conv)}>${icon('x')}</button>
  </div>`;
}

// Under the conversation list while its search box has text: messages from every conversation of the user.
export const MessageSearchResults = defineComponent({
  props: { q: String },
  setup(props) {
    watch(() => props.q, (q) => searchMessages(q || ''), { immediate: true });
    return () => {
      const s = rs.search;
      if (!s.q) return null;
      return html`<section class="msg-search" data-testid="message-search">
        <h3 class="msg-search-head">${t('searchMessages')}</h3>
        ${s.loading && !s.results.length ? html`<div class="empty-hint">${t('searchingMessages')}</div>` : null}
        ${s.done && !s.loading && !s.results.length ? html`<div class="empty-hint" data-testid="no-results">${t('noMessagesFound')}</div>` : null}
        <ul class="conv-list">
          ${s.results.map((m) => {
            const c = state.convs.get(m.conv);
            return html`<li key=${m.id}><button class="conv search-hit" data-testid="search-hit" data-conv=${m.conv}
                data-seq=${m.seq} onClick=${() => jumpTo(m.conv, m.seq)}>
              <span class="conv-main">
                <span class="conv-top"><span class="conv-name">${c ? convTitle(c) : m.conv}</span>
                  <time>${listTime(m.ts, state.now)}</time></span>
                <span class="conv-bottom"><span class="conv-preview">${userName(m.from)}: ${m.body.text || ''}</span></span>
              </span></button></li>`;
          })}
        </ul>
        ${s.next ? html`<button class="btn small" data-testid="more-results" disabled=${s.loading} onClick=${moreResults}>${t('moreResults')}</button>` : null}
      </section>`;
    };
  },
});
