// @ts-check
// Left pane: the conversation list and the contacts (friends, requests, search, blocked).
import { defineComponent, reactive, ref } from '../../vendor/vue/vue.runtime.esm-browser.prod.js';
import { listTime } from '../format.js';
import { html } from '../html.js';
import { errorText, t } from '../i18n.js';
import { icon } from '../icons.js';
import {
  answerRequest, block, confirmThen, convTitle, directConv, isBlocked, loadBlocks, openConv, openModal, presenceOf,
  removeFriend, requestFriend, searchUsers, showContactsTab, sortedConvs, state, typingNames, unblock, unreadOf,
  userName,
} from '../store.js';
import { askPermission, dismissOffer, isMuted, shouldOffer } from '../notify.js';
import { avatar, closeMenu, systemText } from './common.js';
import { MessageSearchResults } from './replysearch.js';

export function preview(c) {
  const m = c.last;
  if (!m) return '';
  const who = c.kind === 'group' && m.from && m.kind !== 'system' && m.kind !== 'recall'
    ? `${m.from === state.me.id ? t('you') : userName(m.from)}: ` : '';
  if (m.recalled) return m.from === state.me.id ? t('recalledByMe') : t('recalledBy', { name: userName(m.from) });
  switch (m.kind) {
    case 'text': return who + (m.body.text || '');
    case 'image': return `${who}${t('image')}`;
    case 'file': return who + t('fileLabel', { name: m.body.name || '' });
    case 'recall': return m.from === state.me.id ? t('recalledByMe') : t('recalledBy', { name: userName(m.from) });
    case 'system': return systemText(m);
    default: return '';
  }
}

export const ConversationList = defineComponent({
  setup() {
    const q = ref('');
    return () => {
      const needle = q.value.trim().toLowerCase();
      const convs = sortedConvs().filter((c) => !needle || convTitle(c).toLowerCase().includes(needle));
      return html`<div class="pane-body">
        <div class="searchbox">${icon('search')}<input data-testid="chat-search" placeholder=${t('searchChats')} value=${q.value}
          onInput=${(e) => (q.value = e.target.value)} /></div>
        ${convs.length && shouldOffer() ? html`<div class="notify-bar" data-testid="notify-offer">${icon('bell')}<span>${t('notifyAsk')}</span>
          <button class="btn small primary" data-testid="notify-enable" onClick=${askPermission}>${t('notifyEnable')}</button>
          <button class="btn small ghost" data-testid="notify-later" onClick=${dismissOffer}>${t('notifyLater')}</button></div>` : null}
        ${convs.length === 0 && !needle ? html`<div class="empty-hint">${t('noChats')}</div>` : null}
        <ul class="conv-list" data-testid="conv-list">
          ${convs.map((c) => {
            const unread = unreadOf(c);
            const title = convTitle(c);
            const group = c.kind === 'group';

            const typing = typingNames(c.conv);
            return html`<li key=${c.conv}>
              <button class=${['conv', { active: state.active === c.conv }]} data-testid="conv" data-conv=${c.conv}
                  data-unread=${unread} onClick=${() => openConv(c.conv)}>
                ${avatar(group ? c.conv : c.peer, title, { group, online: group ? null : presenceOf(c.peer) })}
                <span class="conv-main">
                  <span class="conv-top"><span class="conv-name" data-testid="conv-name">${title}</span>
                    <time>${listTime(c.updated, state.now)}</time></span>
                  <span class="conv-bottom">
                    <span class=${['conv-preview', { typing: typing.length }]} data-testid="conv-preview">
                      ${typing.length ? t('typing', { name: typing.join(t('listSep')) }) : preview(c)}</span>
                    ${isMuted(c.conv) ? html`<span class="muted-mark" title=${t('muted')} data-testid="muted">${icon('bellOff')}</span>` : null}
                    ${unread ? html`<span class=${['badge', { quiet: isMuted(c.conv) }]} data-testid="unread">${unread > 99 ? '99+' : unread}</span>` : null}
                  </span>
                </span>
              </button></li>`;
          })}
        </ul>
        <${MessageSearchResults} q=${q.value} />
      </div>`;
    };
  },
});

// "Name · @user · online": parts joined in one string (markup line breaks would eat the spaces).
function personSub(f) {
  const parts = f.remark ? [f.user.display_name, `@${f.user.username}`] : [`@${f.user.username}`];
  const online = presenceOf(f.user.id);
  if (online !== null) parts.push(online ? t('online') : t('offline'));
  return parts.join(' · ');
}

function friendRow(f) {
  const name = f.remark || f.user.display_name || f.user.username;
  return html`<li key=${f.user.id} class="person" data-testid="friend" data-user=${f.user.id}>
    ${avatar(f.user.id, name, { online: presenceOf(f.user.id) })}
    <span class="person-main"><span class="person-name">${name}</span>
      <span class="person-sub" data-testid="friend-sub">${personSub(f)}</span></span>
    <span class="person-actions">
      <button class="btn small primary" data-testid="friend-message" onClick=${() => openConv(f.conv)}>${t('message')}</button>
      <details class="menu">
        <summary class="icon-btn" aria-label="more" data-testid="friend-menu">${icon('more')}</summary>
        <div class="menu-pop" onClick=${closeMenu}>
          <button data-testid="friend-remark" onClick=${() => openModal({ type: 'remark', user: f.user.id, remark: f.remark })}>${t('setRemark')}</button>
          ${isBlocked(f.user.id)
            ? html`<button data-testid="friend-unblock" onClick=${() => unblock(f.user.id)}>${t('unblock')}</button>`
            : html`<button data-testid="friend-block" onClick=${() => confirmThen(t('confirmBlock', { name }), () => block(f.user.id))}>${t('block')}</button>`}
          <button class="danger" data-testid="friend-remove" onClick=${() => confirmThen(t('confirmRemoveFriend', { name }), () => removeFriend(f.user.id))}>${t('removeFriend')}</button>
        </div>
      </details>
    </span>
  </li>`;
}

export const Contacts = defineComponent({
  setup() {
    const s = reactive({ q: '', results: null, busy: false, error: '' });
    const go = (sub) => {
      showContactsTab(sub);
      if (sub === 'blocked') loadBlocks();
    };
    const search = async (e) => {
      e.preventDefault();
      if (!s.q.trim()) return;
      s.busy = true;
      s.error = '';
      try {
        s.results = await searchUsers(s.q.trim());
      } catch (err) {
        s.error = errorText(err);
      } finally {
        s.busy = false;
      }
    };
    const relation = (u) => {
      if (u.id === state.me.id) return 'me';
      if (state.friends.has(u.id)) return 'friend';
      if (state.requests.outgoing.some((r) => r.to.id === u.id)) return 'requested';
      return 'none';
    };
    return () => {
      const friends = [...state.friends.values()].sort((a, b) =>
        (b.online - a.online) || (a.remark || a.user.display_name).localeCompare(b.remark || b.user.display_name));
      const nReq = state.requests.incoming.length;
      return html`<div class="pane-body">
        <div class="seg small" role="tablist">
          <button class=${{ on: state.contactsTab === 'friends' }} data-testid="sub-friends" onClick=${() => go('friends')}>${t('friends')}</button>
          <button class=${{ on: state.contactsTab === 'requests' }} data-testid="sub-requests" onClick=${() => go('requests')}>${t('requests')}
            ${nReq ? html`<span class="badge">${nReq}</span>` : null}</button>
          <button class=${{ on: state.contactsTab === 'find' }} data-testid="sub-find" onClick=${() => go('find')}>${t('findPeople')}</button>
          <button class=${{ on: state.contactsTab === 'blocked' }} data-testid="sub-blocked" onClick=${() => go('blocked')}>${t('blocked')}</button>
        </div>
        ${state.contactsTab === 'friends' ? html`
          <button class="btn ghost wide new-group" data-testid="new-group" onClick=${() => openModal({ type: 'newGroup' })}>${icon('group')} ${t('newGroup')}</button>
          ${friends.length ? null : html`<div class="empty-hint">${t('noFriends')}</div>`}
          <ul class="people" data-testid="friends">${friends.map(friendRow)}</ul>` : null}
        ${state.contactsTab === 'requests' ? html`
          ${nReq || state.requests.outgoing.length ? null : html`<div class="empty-hint">${t('noRequests')}</div>`}
          <ul class="people" data-testid="requests">
            ${state.requests.incoming.map((r) => html`<li key=${r.id} class="person" data-testid="request" data-user=${r.from.id}>
              ${avatar(r.from.id, r.from.display_name)}
              <span class="person-main"><span class="person-name">${r.from.display_name}</span>
                <span class="person-sub">@${r.from.username}${r.message ? ` · ${r.message}` : ''}</span></span>
              <span class="person-actions">
                <button class="btn small primary" data-testid="accept" onClick=${() => answerRequest(r.id, true)}>${t('accept')}</button>
                <button class="btn small ghost" data-testid="decline" onClick=${() => answerRequest(r.id, false)}>${t('decline')}</button>
              </span></li>`)}
            ${state.requests.outgoing.map((r) => html`<li key=${r.id} class="person muted" data-testid="outgoing">
              ${avatar(r.to.id, r.to.display_name)}
              <span class="person-main"><span class="person-name">${r.to.display_name}</span>
                <span class="person-sub">@${r.to.username}</span></span>
              <span class="person-actions"><span class="chip">${t('waiting')}</span></span></li>`)}
          </ul>` : null}
        ${state.contactsTab === 'find' ? html`
          <form class="searchbox" onSubmit=${search}>${icon('search')}
            <input data-testid="user-search" placeholder=${t('searchUsers')} value=${s.q} maxlength="64"
              onInput=${(e) => (s.q = e.target.value)} />
            <button class="btn small primary" type="submit" disabled=${s.busy} data-testid="user-search-go">${t('search')}</button>
          </form>
          ${s.error ? html`<div class="form-error">${s.error}</div>` : null}
          ${s.results && !s.results.length ? html`<div class="empty-hint">${t('noResults')}</div>` : null}
          <ul class="people" data-testid="search-results">
            ${(s.results || []).map((u) => {
              const rel = relation(u);
              return html`<li key=${u.id} class="person" data-testid="search-result" data-user=${u.id}>
                ${avatar(u.id, u.display_name)}
                <span class="person-main"><span class="person-name">${u.display_name}</span>
                  <span class="person-sub">@${u.username}</span></span>
                <span class="person-actions">
                  ${rel === 'none' ? html`<button class="btn small primary" data-testid="add-friend" onClick=${() => requestFriend(u.id)}>${icon('userPlus')} ${t('addFriend')}</button>` : null}
                  ${rel === 'requested' ? html`<span class="chip">${t('requested')}</span>` : null}
                  ${rel === 'friend' ? html`<button class="btn small ghost" onClick=${() => openConv(directConv(state.me.id, u.id))}>${t('message')}</button>` : null}
                </span></li>`;
            })}
          </ul>` : null}
        ${state.contactsTab === 'blocked' ? html`
          ${state.blocks.length ? null : html`<div class="empty-hint">${t('noBlocked')}</div>`}
          <ul class="people" data-testid="blocked">
            ${state.blocks.map((u) => html`<li key=${u.id} class="person" data-testid="blocked-user">
              ${avatar(u.id, u.display_name)}
              <span class="person-main"><span class="person-name">${u.display_name}</span>
                <span class="person-sub">@${u.username}</span></span>
              <span class="person-actions"><button class="btn small ghost" data-testid="unblock" onClick=${() => unblock(u.id)}>${t('unblock')}</button></span>
            </li>`)}
          </ul>` : null}
      </div>`;
    };
  },
});
