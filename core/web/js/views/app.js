// @ts-check
// The logged-in shell: navigation rail, list pane, chat pane, group panel; and the root that picks a screen.
import { defineComponent, watchEffect } from '../../vendor/vue/vue.runtime.esm-browser.prod.js';
import { html } from '../html.js';
import { i18n, setLang, t } from '../i18n.js';
import { icon } from '../icons.js';
import { confirmLogout, showTab, state, totalUnread, userName } from '../store.js';
import { ChatView } from './chat.js';
import { avatar, closeMenu, ConfirmModal, Lightbox, Toasts } from './common.js';
import { AddMembersModal, GroupPanel, NewGroupModal, RemarkModal } from './group.js';
import { ConversationList, Contacts } from './lists.js';
import { LoginView } from './login.js';
import { StatusPill } from './status.js';

function modal() {
  const m = state.modal;
  if (!m) return null;
  if (m.type === 'newGroup') return html`<${NewGroupModal} />`;
  if (m.type === 'addMembers') return html`<${AddMembersModal} conv=${m.conv} />`;
  if (m.type === 'remark') return html`<${RemarkModal} user=${m.user} remark=${m.remark} />`;
  if (m.type === 'confirm') return html`<${ConfirmModal} text=${m.text} ok=${m.ok} />`;
  return null;
}

const toggleLang = () => setLang(i18n.lang === 'zh-CN' ? 'en' : 'zh-CN');

// On a phone the tab bar holds only the two tabs; language and log out (with a confirmation) are in the list
// header's menu, away from the thumb's path.
const Shell = defineComponent({
  setup() {
    return () => {
      const unread = totalUnread();
      const nReq = state.requests.incoming.length;
      const me = state.me || {};
      const tab = (name, label, ico, badge) => html`<button class=${['rail-btn', { on: state.tab === name }]}
          data-testid=${`nav-${name}`} aria-label=${label} title=${label} onClick=${() => showTab(name)}>
        ${icon(ico)}<span class="rail-label">${label}</span>
        ${badge ? html`<span class="badge" data-testid=${`nav-${name}-badge`}>${badge > 99 ? '99+' : badge}</span>` : null}</button>`;
      return html`<div class=${['shell', { 'has-chat': !!state.active, 'has-panel': state.panel === 'group' }]} data-testid="shell">
        <nav class="rail">
          <div class="rail-me" title=${me.username || ''} data-testid="me">${avatar(me.id, userName(me.id) || me.username)}</div>
          ${tab('chats', t('chats'), 'chat', unread)}
          ${tab('contacts', t('contacts'), 'contacts', nReq)}
          <div class="rail-spacer"></div>
          <button class="rail-btn rail-wide" data-testid="lang" title=${t('language')} aria-label=${t('language')}
            onClick=${toggleLang}>${icon('globe')}<span class="rail-label">${t('language')}</span></button>
          <button class="rail-btn rail-wide" data-testid="logout" title=${t('logout')} aria-label=${t('logout')} onClick=${confirmLogout}>
            ${icon('logout')}<span class="rail-label">${t('logout')}</span></button>
        </nav>
        <section class="list-pane">
          <header class="pane-head"><h1>${state.tab === 'chats' ? t('chats') : t('contacts')}</h1><${StatusPill} />
            <details class="menu pane-menu">
              <summary class="icon-btn" aria-label=${t('me')} title=${t('me')} data-testid="me-menu">${icon('more')}</summary>
              <div class="menu-pop" onClick=${closeMenu}>
                <button data-testid="menu-lang" onClick=${toggleLang}>${t('language')}</button>
                <button class="danger" data-testid="menu-logout" onClick=${confirmLogout}>${t('logout')}</button>
              </div>
            </details></header>
          ${state.tab === 'chats' ? html`<${ConversationList} />` : html`<${Contacts} />`}
        </section>
        <main class="chat-pane">
          ${state.active ? html`<${ChatView} conv=${state.active} key=${state.active} />`
            : html`<div class="chat-empty">${icon('chat', 'big')}<p>${t('noChatSelected')}</p></div>`}
        </main>
        ${state.active && state.panel === 'group' ? html`<${GroupPanel} conv=${state.active} />` : null}
      </div>`;
    };
  },
});

export const Root = defineComponent({
  setup() {
    watchEffect(() => {
      const n = state.screen === 'app' ? totalUnread() : 0;
      document.title = n ? `(${n > 99 ? '99+' : n}) wsim` : 'wsim';
    });
    watchEffect(() => {
      document.documentElement.lang = i18n.lang;
    });
    return () => html`${state.screen === 'app' ? html`<${Shell} />` : html`<${LoginView} />`}
      ${modal()}<${Lightbox} /><${Toasts} />`;
  },
});
