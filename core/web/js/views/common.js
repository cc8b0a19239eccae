// @ts-check
// Small shared pieces: avatars, toasts, modals, the image lightbox.
import { defineComponent, ref } from '../../vendor/vue/vue.runtime.esm-browser.prod.js';
import { html } from '../html.js';
import { t } from '../i18n.js';
import { icon } from '../icons.js';
import { closeLightbox, closeModal, state, userName } from '../store.js';

const COLORS = ['#5b8def', '#f08a5d', '#4fb286', '#b57edc', '#e8a33d', '#3fb0c9', '#e0627a', '#7c8cf8'];

function colorFor(id) {
  let h = 0;
  for (const ch of String(id || '')) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return COLORS[h % COLORS.length];
}

// Initial-letter avatar; `online` adds the presence dot (true/false), null shows none.
export function avatar(id, name, { size = 'md', online = null, group = false } = {}) {
  const letter = group ? null : Array.from((name || '?').trim())[0] || '?';
  const cls = ['avatar', `avatar-${size}`, colorClass(id)];
  return html`<span class=${cls} aria-hidden="true">
    ${group ? icon('group') : letter.toUpperCase()}
    ${online === null ? null : html`<i class=${['presence', online ? 'on' : 'off']} data-testid="presence" data-online=${String(online)}></i>`}
  </span>`;
}

function colorClass(id) {
  return `c${COLORS.indexOf(colorFor(id))}`;
}

export const Toasts = defineComponent({
  setup() {
    return () => html`<div class="toasts" role="status" aria-live="polite">
      ${state.toasts.map((x) => html`<div key=${x.id} class=${['toast', x.kind]} data-testid="toast">${x.text}</div>`)}
    </div>`;
  },
});

export const Lightbox = defineComponent({
  setup() {
    const close = closeLightbox;
    return () =>
      state.lightbox
        ? html`<div class="lightbox" data-testid="lightbox" onClick=${close}>
            <img src=${state.lightbox.url} alt=${state.lightbox.name} onClick=${(e) => e.stopPropagation()} />
            <div class="lightbox-bar">
              <span class="name">${state.lightbox.name}</span>
              <a class="btn ghost light" href=${state.lightbox.url} download=${state.lightbox.name} onClick=${(e) => e.stopPropagation()}>${icon('download')} ${t('download')}</a>
              <button class="btn ghost light" onClick=${close} aria-label=${t('close')}>${icon('x')}</button>
            </div>
          </div>`
        : null;
  },
});

// A modal frame: title, body (a render function) and an optional close button.
export function modalFrame(title, body, onClose, testid = 'modal') {
  return html`<div class="modal-backdrop" onClick=${onClose}>
    <div class="modal" role="dialog" aria-modal="true" data-testid=${testid} onClick=${(e) => e.stopPropagation()}>
      <header class="modal-head"><h2>${title}</h2>
        <button class="icon-btn" onClick=${onClose} aria-label=${t('close')}>${icon('x')}</button></header>
      ${body}
    </div>
  </div>`;
}

// Yes/no confirmation, opened by the store's confirmThen(text, ok).
export const ConfirmModal = defineComponent({
  props: { text: String, ok: Function },
  setup(props) {
    const busy = ref(false);
    const close = closeModal;
    const confirm = async () => {
      busy.value = true;
      try {
        await props.ok();
      } finally {
        busy.value = false;
        close();
      }
    };
    return () =>
      modalFrame(
        '',
        html`<p class="confirm-text">${props.text}</p>
          <footer class="modal-foot">
            <button class="btn ghost" onClick=${close}>${t('cancel')}</button>
            <button class="btn danger" data-testid="confirm-ok" disabled=${busy.value} onClick=${confirm}>${t('ok')}</button>
          </footer>`,
        close,
        'confirm',
      );
  },
});

// A click on an item of a <details> menu closes the menu.
export function closeMenu(e) {
  const d = e.currentTarget.closest('details');
  if (d) d.open = false;
}

// The sentence for a system message (group and friendship events); names are text, never markup.
export function systemText(msg) {
  const b = msg.body || {};
  const names = (ids) => (ids || []).map((id) => (id === state.me.id ? t('you') : userName(id))).join(t('listSep'));
  const actor = b.actor === state.me.id ? t('you') : userName(b.actor);
  switch (b.event) {
    case 'friend.accepted': return t('sysFriend');
    case 'group.created': return t('sysCreated', { actor, name: b.name });
    case 'group.renamed': return t('sysRenamed', { actor, name: b.name });
    case 'group.members_added': return t('sysAdded', { actor, users: names(b.users) });
    case 'group.member_removed': return t('sysRemoved', { actor, users: names(b.users) });
    case 'group.member_left': return t('sysLeft', { users: names(b.users) });
    case 'group.role_changed': return t('sysRole', { actor, users: names(b.users), role: t(b.role || 'member') });
    case 'group.dissolved': return t('sysDissolved', { actor });
    default: return b.event || '';
  }
}
