// The open conversation: header, message stream (paged history, day separators, ticks), composer.
import {
  defineComponent, nextTick, onBeforeUnmount, onMounted, ref, watch,
} from '../../vendor/vue/vue.runtime.esm-browser.prod.js';
import { dayKey, dayLabel, fileSize, timeOfDay } from '../format.js';
import { html } from '../html.js';
import { t } from '../i18n.js';
import { icon } from '../icons.js';
import { linkify } from '../linkify.js';
import {
  canRecall, convTitle, discardSend, fileLink, hasOlder, isBlocked, loadHistory, messagesOf, notifyTyping,
  pendingOf, presenceOf, receiptOf, recall, retrySend, sendFile, sendText, state, typingNames, userName, closeConv,
} from '../store.js';
import { takeReply } from '../replysearch.js';
import { avatar, systemText } from './common.js';
import { isHighlighted, quoteBlock, replyBar, replyButton } from './replysearch.js';
import { ConnectionBanner } from './status.js';

// ------------------------------------------------------------------------------------------------ pieces
function textBody(text) {
  return html`<div class="text">${linkify(text).map((seg) =>
    seg.href
      ? html`<a href=${seg.href} target="_blank" rel="noopener noreferrer">${seg.text}</a>`
      : seg.text)}</div>`;
}

// A thumbnail through a signed link (img cannot send the bearer header); click opens the full image.
const ImageThumb = defineComponent({
  props: { body: Object, preview: String },
  setup(props) {
    const src = ref(props.preview || '');
    const full = ref('');
    onMounted(async () => {
      if (props.preview || !props.body.file) return;
      try {
        const link = await fileLink(props.body.file);
        src.value = link.thumbnail_url || link.url;
        full.value = link.url;
      } catch {
        /* shown as a placeholder */
      }
    });
    return () => {
      const w = props.body.width || 240;
      const hgt = props.body.height || 180;
      const scale = Math.min(1, 240 / w, 240 / hgt);
      const box = { width: `${Math.round(w * scale)}px`, aspectRatio: `${w} / ${hgt}` };
      // Signed links live 10 minutes: the full image gets a fresh one (cached until near expiry) on click.
      const open = async () => {
        const link = await fileLink(props.body.file).catch(() => null);
        if (link) state.lightbox = { url: link.url, name: props.body.name };
      };
      return html`<button class="thumb" style=${box} data-testid="image" disabled=${!full.value} onClick=${open}>
        ${src.value ? html`<img src=${src.value} alt=${props.body.name || ''} loading="lazy" />` : html`<span class="thumb-ph">${icon('image')}</span>`}
      </button>`;
    };
  },
});

const FileCard = defineComponent({
  props: { body: Object },
  setup(props) {
    const href = ref('');
    // Signed links live 10 minutes: refresh (from the cache unless near expiry) whenever the card is approached.
    const refresh = async () => {
      try {
        href.value = (await fileLink(props.body.file)).url;
      } catch {
        /* no link: the name still shows */
      }
    };
    onMounted(refresh);
    return () => html`<a class="file-card" data-testid="file" href=${href.value || undefined} download=${props.body.name}
        rel="noopener noreferrer" onPointerenter=${refresh} onFocus=${refresh}>
      <span class="file-icon">${icon('file')}</span>
      <span class="file-meta"><span class="file-name" data-testid="file-name">${props.body.name}</span>
        <span class="file-size">${fileSize(props.body.size)}</span></span>
      <span class="file-dl">${icon('download')}</span>
    </a>`;
  },
});

function ticks(msg, group) {
  const r = receiptOf(msg);
  const label = r.status === 'read' ? t('read') : r.status === 'delivered' ? t('delivered') : t('sent');
  const mark = html`<span class=${['tick', r.status]} title=${label} aria-label=${label}>
    ${icon(r.status === 'sent' ? 'check' : 'checks')}</span>`;
  if (!group) return html`<span class="receipt" data-testid="receipt" data-status=${r.status}>${mark}</span>`;
  const text = r.total && r.readers === r.total ? t('allRead') : r.readers ? t('readCount', { n: r.readers }) : '';
  return html`<span class="receipt" data-testid="receipt" data-status=${r.status} data-readers=${r.readers}>
    ${mark}${text ? html`<span class="read-count" data-testid="read-count">${text}</span>` : null}</span>`;
}

function content(kind, body, preview) {
  if (kind === 'image') {
    return [html`<${ImageThumb} body=${body} preview=${preview} />`, body.text ? textBody(body.text) : null];
  }
  if (kind === 'file') return [html`<${FileCard} body=${body} />`, body.text ? textBody(body.text) : null];
  return textBody(body.text || '');
}

function messageRow(msg, group) {
  if (msg.kind === 'system') {
    return html`<div class="sys" data-testid="msg" data-kind="system" data-seq=${msg.seq} key=${`s${msg.seq}`}>${systemText(msg)}</div>`;
  }
  const mine = msg.from === state.me.id;
  if (msg.recalled) {
    return html`<div class="sys recalled" data-testid="msg" data-kind="recalled" data-seq=${msg.seq} key=${`s${msg.seq}`}>
      ${mine ? t('recalledByMe') : t('recalledBy', { name: userName(msg.from) })}</div>`;
  }
  const name = userName(msg.from);
  return html`<div class=${['row', mine ? 'mine' : 'theirs', { highlight: isHighlighted(msg) }]} key=${`s${msg.seq}`} data-testid="msg" data-kind=${msg.kind}
      data-seq=${msg.seq} data-id=${msg.id}>
    ${mine ? null : avatar(msg.from, name, { size: 'sm' })}
    <div class="stack">
      ${group && !mine ? html`<div class="sender">${name}</div>` : null}
      <div class="bubble-line">
        <div class=${['bubble', `k-${msg.kind}`]}>${quoteBlock(msg)}${content(msg.kind, msg.body)}</div>
        ${replyButton(msg)}
        ${canRecall(msg) ? html`<button class="recall-btn" data-testid="recall" title=${t('recall')} onClick=${() => recall(msg)}>${icon('undo')}<span>${t('recall')}</span></button>` : null}
      </div>
      <div class="meta"><time>${timeOfDay(msg.ts)}</time>${mine ? ticks(msg, group) : null}</div>
    </div>
  </div>`;
}

function pendingRow(e) {
  const failed = e.state === 'failed';
  return html`<div class="row mine pending" key=${`p${e.cmid}`} data-testid="msg" data-kind=${e.kind} data-pending="true">
    <div class="stack">
      <div class="bubble-line"><div class=${['bubble', `k-${e.kind}`]}>${quoteBlock(e)}${content(e.kind, e.body)}</div></div>
      <div class="meta">
        ${failed
          ? html`<span class="receipt failed" data-testid="receipt" data-status="failed">${icon('alert')} ${t('failed')}
              <button class="link-btn" onClick=${() => retrySend(e.cmid)}>${t('retry')}</button>
              <button class="link-btn" onClick=${() => discardSend(e.cmid)}>${t('discard')}</button></span>`
          : html`<span class="receipt" data-testid="receipt" data-status="pending" title=${t('pending')}>${icon('clock')}</span>`}
      </div>
    </div>
  </div>`;
}

function uploadRow(u) {
  const pct = Math.round(u.progress * 100);
  return html`<div class="row mine pending" key=${`u${u.id}`} data-testid="upload">
    <div class="stack"><div class="bubble-line"><div class="bubble upload">
      ${u.previewUrl ? html`<img class="upload-preview" src=${u.previewUrl} alt="" />` : html`<span class="file-icon">${icon('file')}</span>`}
      <div class="upload-info"><span class="file-name">${u.name}</span>
        <div class="progress" role="progressbar" aria-valuenow=${pct} aria-valuemin="0" aria-valuemax="100">
          <i style=${{ width: `${pct}%` }}></i></div>
        <span class="file-size">${t('uploading', { p: pct })} · ${fileSize(u.size)}</span></div>
      <button class="icon-btn" onClick=${() => u.abort()} aria-label=${t('cancel')}>${icon('x')}</button>
    </div></div></div>
  </div>`;
}

// ------------------------------------------------------------------------------------------------ stream
const MessageStream = defineComponent({
  props: { conv: String },
  setup(props) {
    const el = ref(null);
    let stick = true;
    let anchor = null; // {height, top} before older messages are prepended

    const atBottom = () => {
      const e = el.value;
      return !e || e.scrollHeight - e.scrollTop - e.clientHeight < 48;
    };
    const toBottom = () => {
      const e = el.value;
      if (e) e.scrollTop = e.scrollHeight;
    };
    const maybeLoadOlder = async () => {
      const e = el.value;
      const h = state.history.get(props.conv);
      if (!e || (h && h.loading) || !hasOlder(props.conv)) return;
      if (e.scrollTop > 120 && e.scrollHeight > e.clientHeight + 8) return;
      anchor = { height: e.scrollHeight, top: e.scrollTop };
      await loadHistory(props.conv, true);
    };
    const onScroll = () => {
      stick = atBottom();
      maybeLoadOlder();
    };
    const afterRender = async () => {
      await nextTick();
      const e = el.value;
      if (!e) return;
      if (anchor) {
        e.scrollTop = e.scrollHeight - anchor.height + anchor.top;
        anchor = null;
      } else if (stick) toBottom();
      if (e.scrollHeight <= e.clientHeight + 8) maybeLoadOlder();
    };
    watch(
      () => [messagesOf(props.conv).length, pendingOf(props.conv).length, state.uploads.length, props.conv],
      (now, before) => {
        if (before && now[3] !== before[3]) stick = true;
        afterRender();
      },
    );
    onMounted(() => {
      toBottom();
      afterRender();
    });

    return () => {
      const conv = props.conv;
      const group = conv.startsWith('g:');
      const msgs = messagesOf(conv);
      const h = state.history.get(conv);
      const items = [];
      let lastDay = null;
      const sep = (ts) => {
        const k = dayKey(ts);
        if (k !== lastDay) {
          lastDay = k;
          items.push(html`<div class="day" key=${`d${k}`} data-testid="day"><span>${dayLabel(ts, state.now)}</span></div>`);
        }
      };
      for (const m of msgs) {
        sep(m.ts);
        items.push(messageRow(m, group));
      }
      for (const e of pendingOf(conv)) {
        sep(e.createdAt);
        items.push(pendingRow(e));
      }
      for (const u of state.uploads) if (u.conv === conv) items.push(uploadRow(u));
      const older = hasOlder(conv);
      return html`<div class="stream" ref=${el} onScroll=${onScroll} data-testid="stream">
        <div class="stream-top">${h && h.loading ? t('loadingOlder') : !older && msgs.length ? t('noOlder') : ''}</div>
        ${items}
      </div>`;
    };
  },
});

// ------------------------------------------------------------------------------------------------ composer
const narrow = window.matchMedia('(max-width: 760px)');

const Composer = defineComponent({
  props: { conv: String },
  setup(props) {
    const text = ref('');
    const input = ref(null);
    const imageInput = ref(null);
    const fileInput = ref(null);
    const submit = () => {
      if (!text.value.trim()) return;
      if (sendText(props.conv, text.value, takeReply(props.conv))) {
        text.value = '';
        nextTick(resize);
      }
    };
    const resize = () => {
      const e = input.value;
      if (!e) return;
      e.style.height = 'auto';
      e.style.height = `${Math.min(e.scrollHeight, 160)}px`;
    };
    const onKey = (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        submit();
      }
    };
    const onInput = (e) => {
      text.value = e.target.value;
      resize();
      if (text.value) notifyTyping(props.conv);
    };
    const pick = (e) => {
      for (const f of e.target.files) sendFile(props.conv, f);
      e.target.value = '';
    };
    const onPaste = (e) => {
      const files = [...(e.clipboardData ? e.clipboardData.files : [])];
      if (files.length) {
        e.preventDefault();
        files.forEach((f) => sendFile(props.conv, f));
      }
    };
    watch(() => props.conv, () => {
      text.value = '';
    });
    onMounted(() => {
      if (window.matchMedia('(pointer: fine)').matches && input.value) input.value.focus();
    });
    return () => html`${replyBar(props.conv)}<div class="composer">
      <div class="tools">
        <button class="icon-btn" title=${t('sendImage')} aria-label=${t('sendImage')} data-testid="attach-image"
          onClick=${() => imageInput.value.click()}>${icon('image')}</button>
        <button class="icon-btn" title=${t('sendFile')} aria-label=${t('sendFile')} data-testid="attach-file"
          onClick=${() => fileInput.value.click()}>${icon('paperclip')}</button>
        <input ref=${imageInput} type="file" accept="image/png,image/jpeg,image/gif,image/webp" multiple hidden
          data-testid="image-input" onChange=${pick} />
        <input ref=${fileInput} type="file" multiple hidden data-testid="file-input" onChange=${pick} />
      </div>
      <textarea ref=${input} rows="1" data-testid="composer" value=${text.value}
        placeholder=${narrow.matches ? t('typeMessageShort') : t('typeMessage')}
        maxlength=${state.config.max_text_chars} onInput=${onInput} onKeydown=${onKey} onPaste=${onPaste}></textarea>
      <button class="send-btn" data-testid="send" disabled=${!text.value.trim()} onClick=${submit}
        aria-label=${t('send')}>${icon('send')}</button>
    </div>`;
  },
});

// ------------------------------------------------------------------------------------------------ view
export const ChatView = defineComponent({
  props: { conv: String },
  setup(props) {
    const onKey = (e) => {
      if (e.key === 'Escape' && state.lightbox) state.lightbox = null;
    };
    onMounted(() => document.addEventListener('keydown', onKey));
    onBeforeUnmount(() => document.removeEventListener('keydown', onKey));
    return () => {
      const c = state.convs.get(props.conv);
      if (!c) return null;
      const group = c.kind === 'group';
      const title = convTitle(c);
      const online = group ? null : presenceOf(c.peer);
      const g = group ? state.groups.get(c.conv) : null;
      const typing = typingNames(c.conv);
      let sub = '';
      if (typing.length) sub = t('typing', { name: typing.join(t('listSep')) });
      else if (group && g) sub = t('members', { n: g.members.length });
      else if (online !== null) sub = online ? t('online') : t('offline');
      let blockedReason = '';
      if (group && c.dissolved) blockedReason = t('dissolvedNotice');
      else if (group && c.left) blockedReason = t('readOnly');
      else if (!group && isBlocked(c.peer)) blockedReason = t('blockedNotice');
      return html`<section class="chat" data-testid="chat" data-conv=${c.conv}>
        <header class="chat-head">
          <button class="icon-btn back" onClick=${closeConv} aria-label=${t('back')} data-testid="back">${icon('back')}</button>
          ${avatar(group ? c.conv : c.peer, title, { group, online })}
          <div class="chat-title"><h2 data-testid="chat-title">${title}</h2>
            <div class=${['chat-sub', { typing: typing.length }]} data-testid=${typing.length ? 'typing' : 'chat-sub'}>${sub}</div></div>
          ${group ? html`<button class="icon-btn" data-testid="group-info" title=${t('groupInfo')} aria-label=${t('groupInfo')}
            onClick=${() => (state.panel = state.panel === 'group' ? null : 'group')}>${icon('more')}</button>` : null}
        </header>
        <${ConnectionBanner} />
        <${MessageStream} conv=${c.conv} key=${c.conv} />
        ${blockedReason ? html`<div class="composer-blocked" data-testid="readonly">${blockedReason}</div>` : html`<${Composer} conv=${c.conv} />`}
      </section>`;
    };
  },
});
