// @ts-check
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
  closeLightbox, rs, showLightbox, takeReply, toggleGroupPanel,
} from '../store.js';
import { isMuted, toggleMute } from '../notify.js';
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
        if (link) showLightbox(link.url, props.body.name);
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

// `cont`: the previous row is by the same sender a moment earlier, so avatar and name are not repeated; `showTime`:
// the last of such a run carries the time (ticks stay on every message of mine).
function messageRow(msg, group, { cont = false, showTime = true } = {}) {
  if (msg.kind === 'system') {
    return html`<div class="sys" data-testid="msg" data-kind="system" data-seq=${msg.seq} key=${`s${msg.seq}`}>${systemText(msg)}</div>`;
  }
  const mine = msg.from === state.me.id;
  if (msg.recalled) {
    return html`<div class="sys recalled" data-testid="msg" data-kind="recalled" data-seq=${msg.seq} key=${`s${msg.seq}`}>
      ${mine ? t('recalledByMe') : t('recalledBy', { name: userName(msg.from) })}</div>`;
  }
  const name = userName(msg.from);
  return html`<div class=${['row', mine ? 'mine' : 'theirs', { cont, highlight: isHighlighted(msg) }]} key=${`s${msg.seq}`} data-testid="msg" data-kind=${msg.kind}
      data-seq=${msg.seq} data-id=${msg.id} data-cont=${String(cont)}>
    ${mine ? null : cont ? html`<span class="avatar-gap"></span>` : avatar(msg.from, name, { size: 'sm' })}
    <div class="stack">
      ${group && !mine && !cont ? html`<div class="sender">${name}</div>` : null}
      <div class="bubble-line">
        <div class=${['bubble', `k-${msg.kind}`]}>${quoteBlock(msg)}${content(msg.kind, msg.body)}</div>
        ${replyButton(msg)}
        ${canRecall(msg) ? html`<button class="recall-btn" data-testid="recall" title=${t('recall')} onClick=${() => recall(msg)}>${icon('undo')}<span>${t('recall')}</span></button>` : null}
      </div>
      ${showTime || mine ? html`<div class=${['meta', { 'no-time': !showTime }]}>${showTime ? html`<time data-testid="time">${timeOfDay(msg.ts)}</time>` : null}${mine ? ticks(msg, group) : null}</div>` : null}
    </div>
  </div>`;
}

// Consecutive messages from one sender within this window (and the same day) form one run.
const RUN_MS = 5 * 60 * 1000;
const runs = (a, b) => !!a && !!b && a.from === b.from && !a.recalled && !b.recalled
  && ['text', 'image', 'file'].includes(a.kind) && ['text', 'image', 'file'].includes(b.kind)
  && b.ts - a.ts < RUN_MS && dayKey(a.ts) === dayKey(b.ts);

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
// The only scrolling part of a chat. It opens at the first unread message (with a marker) or at the newest, follows
// new messages while at the bottom, keeps its place when older pages are prepended or the layout changes size
// (images loading, the phone keyboard, the pane hidden behind the group panel), and offers "jump to latest".
const MessageStream = defineComponent({
  props: { conv: String },
  setup(props) {
    const el = ref(null);
    const inner = ref(null);
    const away = ref(false); // scrolled up from the newest message
    let stick = true;
    let positioned = false; // the opening position has been taken
    let fromBottom = 0; // distance from the bottom, kept across size changes
    let anchor = null; // {height, top} before older messages are prepended
    let observer = null;

    const distance = (e) => e.scrollHeight - e.scrollTop - e.clientHeight;
    const toBottom = () => {
      const e = el.value;
      if (e) e.scrollTop = e.scrollHeight;
      stick = true;
      fromBottom = 0;
      away.value = false;
    };
    const maybeLoadOlder = async () => {
      const e = el.value;
      const h = state.history.get(props.conv);
      if (!e || !positioned || (h && h.loading) || !hasOlder(props.conv)) return;
      if (e.scrollTop > 300 && e.scrollHeight > e.clientHeight + 8) return;
      anchor = { height: e.scrollHeight, top: e.scrollTop };
      await loadHistory(props.conv, true);
    };
    const onScroll = () => {
      const e = el.value;
      if (!e || !e.clientHeight) return; // hidden (display: none) resets scrollTop: not the reader's doing
      fromBottom = distance(e);
      stick = fromBottom < 48;
      away.value = fromBottom > 160;
      maybeLoadOlder();
    };
    // The opening position: the unread marker near the top, else the newest message.
    const position = () => {
      const e = el.value;
      if (!e) return;
      const mark = e.querySelector('[data-testid="unread-marker"]');
      if (mark) {
        e.scrollTop = Math.max(0, mark.offsetTop - e.offsetTop - 12);
        fromBottom = distance(e);
        stick = fromBottom < 48;
        away.value = fromBottom > 160;
      } else toBottom();
      positioned = true;
      maybeLoadOlder();
    };
    // A jump from search (rs.highlight) centres its message once it is rendered, and the stream stops following
    // the newest message until the reader scrolls back down.
    let jumpTo = null;
    const showJump = () => {
      const e = el.value;
      const row = e && jumpTo !== null && e.querySelector(`[data-seq="${jumpTo}"]`);
      if (!row) return false;
      row.scrollIntoView({ block: 'center' });
      jumpTo = null;
      positioned = true;
      anchor = null;
      fromBottom = distance(e);
      stick = fromBottom < 48;
      away.value = fromBottom > 160;
      return true;
    };
    watch(
      () => rs.highlight,
      (hl) => {
        if (!hl || hl.conv !== props.conv) return;
        jumpTo = hl.seq;
        nextTick(showJump);
      },
      { immediate: true },
    );
    const afterRender = async () => {
      await nextTick();
      const e = el.value;
      if (!e) return;
      if (jumpTo !== null && showJump()) return;
      const h = state.history.get(props.conv);
      if (!positioned) {
        if (h && h.ready) position();
        return;
      }
      if (anchor) {
        e.scrollTop = e.scrollHeight - anchor.height + anchor.top;
        anchor = null;
      } else if (stick) toBottom();
      if (e.scrollHeight <= e.clientHeight + 8) maybeLoadOlder();
    };
    watch(
      () => [messagesOf(props.conv).length, state.uploads.length, (state.history.get(props.conv) || {}).ready],
      () => afterRender(),
    );
    // Sending scrolls to the newest message, as in every chat app.
    watch(() => pendingOf(props.conv).length, (n, old) => {
      if (n > (old || 0)) stick = true;
      afterRender();
    });
    onMounted(() => {
      afterRender();
      // Content growing (an image loaded, a message below) keeps the reader's place unless they follow the newest;
      // the box itself resizing (keyboard, rotation, shown again after being hidden) keeps the distance from the
      // bottom, so what was in view stays in view.
      let boxHeight = 0;
      observer = new ResizeObserver(() => {
        const e = el.value;
        if (!e || !e.clientHeight || !positioned) return;
        const boxChanged = e.clientHeight !== boxHeight;
        boxHeight = e.clientHeight;
        if (stick) e.scrollTop = e.scrollHeight;
        else if (boxChanged) e.scrollTop = e.scrollHeight - e.clientHeight - fromBottom;
      });
      observer.observe(el.value);
      observer.observe(inner.value);
    });
    onBeforeUnmount(() => observer && observer.disconnect());

    return () => {
      const conv = props.conv;
      const group = conv.startsWith('g:');
      const msgs = messagesOf(conv);
      const h = state.history.get(conv);
      const from = state.unreadFrom.get(conv);
      const items = [];
      let lastDay = null;
      let marked = false;
      const sep = (ts) => {
        const k = dayKey(ts);
        if (k !== lastDay) {
          lastDay = k;
          items.push(html`<div class="day" key=${`d${k}`} data-testid="day"><span>${dayLabel(ts, state.now)}</span></div>`);
        }
      };
      msgs.forEach((m, i) => {
        sep(m.ts);
        const markHere = from && !marked && m.seq >= from && m.from !== state.me.id;
        if (markHere) {
          marked = true;
          items.push(html`<div class="unread-mark" key="unread" data-testid="unread-marker"><span>${t('newMessages')}</span></div>`);
        }
        const next = msgs[i + 1];
        const nextMarked = next && from && !marked && next.seq >= from && next.from !== state.me.id;
        items.push(messageRow(m, group, {
          cont: !markHere && runs(msgs[i - 1], m),
          showTime: nextMarked || !runs(m, next),
        }));
      });
      for (const e of pendingOf(conv)) {
        sep(e.createdAt);
        items.push(pendingRow(e));
      }
      for (const u of state.uploads) if (u.conv === conv) items.push(uploadRow(u));
      const older = hasOlder(conv);
      return html`<div class="stream" ref=${el} onScroll=${onScroll} data-testid="stream">
        <div ref=${inner}>
          <div class="stream-top" data-testid="stream-top">${h && h.loading ? t('loadingOlder') : !older && msgs.length ? t('noOlder') : ''}</div>
          ${items}
        </div>
      </div>
      ${away.value ? html`<button class="jump-latest" data-testid="jump-latest" onClick=${toBottom}>${icon('down')} ${t('jumpLatest')}</button>` : null}`;
    };
  },
});

// ------------------------------------------------------------------------------------------------ composer
const narrow = window.matchMedia('(max-width: 760px)');

// The emoji offered by the picker: the everyday ones of chat apps (faces, gestures, hearts, a few objects).
const EMOJI = [...'😀😁😂🤣😊😍😘😎🤔😅😉🙂🙃😇🥰😋😜🤗🤩😴😭😢😡😱😳🥲😤🤯🥳😏🙄😬🤝👍👎👌✌️🙏👏💪👀🎉🎂🎁🌹❤️💔💯🔥✨⭐☕🍻🍉🍜🚀⏰📷📎✅❌❓'.matchAll(/\p{Extended_Pictographic}\uFE0F?/gu)].map((m) => m[0]);

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
    // A pasted image (a screenshot, an image copied in a browser) is uploaded like a picked one.
    const onPaste = (e) => {
      const files = [...(e.clipboardData ? e.clipboardData.files : [])];
      if (files.length) {
        e.preventDefault();
        files.forEach((f) => sendFile(props.conv, f));
      }
    };
    const emojiOpen = ref(false);
    const root = ref(null);
    // Insert at the caret (replacing a selection), keep the picker open for more, keep focus in the text.
    const insertEmoji = (emo) => {
      const e = input.value;
      const start = e ? e.selectionStart : text.value.length;
      const end = e ? e.selectionEnd : text.value.length;
      text.value = text.value.slice(0, start) + emo + text.value.slice(end);
      nextTick(() => {
        if (!e) return;
        e.focus();
        e.selectionStart = e.selectionEnd = start + emo.length;
        resize();
      });
    };
    const onDocDown = (e) => {
      if (emojiOpen.value && root.value && !root.value.contains(e.target)) emojiOpen.value = false;
    };
    const onDocKey = (e) => {
      if (e.key === 'Escape') emojiOpen.value = false;
    };
    onMounted(() => {
      document.addEventListener('pointerdown', onDocDown);
      document.addEventListener('keydown', onDocKey);
    });
    onBeforeUnmount(() => {
      document.removeEventListener('pointerdown', onDocDown);
      document.removeEventListener('keydown', onDocKey);
    });
    watch(() => props.conv, () => {
      text.value = '';
    });
    onMounted(() => {
      if (window.matchMedia('(pointer: fine)').matches && input.value) input.value.focus();
    });
    return () => html`${replyBar(props.conv)}<div class="composer" ref=${root}>
      ${emojiOpen.value ? html`<div class="emoji-pop" role="dialog" aria-label=${t('emoji')} data-testid="emoji-picker">
        ${EMOJI.map((emo) => html`<button key=${emo} data-testid="emoji" onClick=${() => insertEmoji(emo)}>${emo}</button>`)}</div>` : null}
      <div class="tools">
        <button class=${['icon-btn', { on: emojiOpen.value }]} title=${t('emoji')} aria-label=${t('emoji')} data-testid="emoji-btn"
          aria-expanded=${String(emojiOpen.value)} onClick=${() => (emojiOpen.value = !emojiOpen.value)}>${icon('smile')}</button>
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
      if (e.key === 'Escape' && state.lightbox) closeLightbox();
    };
    onMounted(() => document.addEventListener('keydown', onKey));
    onBeforeUnmount(() => document.removeEventListener('keydown', onKey));
    // Files dragged over the chat: a drop zone over the whole pane; dropping uploads each file with its progress bar.
    const dragging = ref(0);
    const hasFiles = (e) => !!e.dataTransfer && [...e.dataTransfer.types].includes('Files');
    const canSend = () => {
      const c = state.convs.get(props.conv);
      return c && !c.dissolved && !c.left && !(c.kind === 'direct' && isBlocked(c.peer));
    };
    const onDragEnter = (e) => {
      if (!hasFiles(e) || !canSend()) return;
      e.preventDefault();
      dragging.value += 1;
    };
    const onDragOver = (e) => {
      if (!hasFiles(e) || !canSend()) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
    };
    const onDragLeave = (e) => {
      if (hasFiles(e) && dragging.value > 0) dragging.value -= 1;
    };
    const onDrop = (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      dragging.value = 0;
      if (canSend()) for (const f of e.dataTransfer.files) sendFile(props.conv, f);
    };
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
      const muted = isMuted(c.conv);
      return html`<section class="chat" data-testid="chat" data-conv=${c.conv} onDragenter=${onDragEnter}
          onDragover=${onDragOver} onDragleave=${onDragLeave} onDrop=${onDrop}>
        ${dragging.value ? html`<div class="drop-zone" data-testid="drop-zone">${icon('paperclip')} ${t('dropHere')}</div>` : null}
        <header class="chat-head">
          <button class="icon-btn back" onClick=${closeConv} aria-label=${t('back')} data-testid="back">${icon('back')}</button>
          ${avatar(group ? c.conv : c.peer, title, { group, online })}
          <div class="chat-title"><h2 data-testid="chat-title">${title}</h2>
            <div class=${['chat-sub', { typing: typing.length }]} data-testid=${typing.length ? 'typing' : 'chat-sub'}>${sub}</div></div>
          <button class=${['icon-btn', { on: muted }]} data-testid="mute" data-muted=${String(muted)}
            title=${muted ? t('unmute') : t('mute')} aria-label=${muted ? t('unmute') : t('mute')}
            onClick=${() => toggleMute(c.conv)}>${icon(muted ? 'bellOff' : 'bell')}</button>
          ${group ? html`<button class="icon-btn" data-testid="group-info" title=${t('groupInfo')} aria-label=${t('groupInfo')}
            onClick=${toggleGroupPanel}>${icon('more')}</button>` : null}
        </header>
        <${ConnectionBanner} />
        <${MessageStream} conv=${c.conv} key=${c.conv} />
        ${blockedReason ? html`<div class="composer-blocked" data-testid="readonly">${blockedReason}</div>` : html`<${Composer} conv=${c.conv} />`}
      </section>`;
    };
  },
});
