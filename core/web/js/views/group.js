// @ts-check
// Group panel (members, roles, rename, add/remove, leave, dissolve) and the group/remark dialogs.
import { defineComponent, reactive } from '../../vendor/vue/vue.runtime.esm-browser.prod.js';
import { html } from '../html.js';
import { t } from '../i18n.js';
import { icon } from '../icons.js';
import {
  addMembers, closeModal, closePanel, confirmThen, createGroup, dissolveGroup, leaveGroup, myRole, openModal,
  removeMember, renameGroup, setRemark, setRole, state, userName,
} from '../store.js';
import { avatar, closeMenu, modalFrame } from './common.js';

const ROLE_ORDER = { owner: 0, admin: 1, member: 2 };

export const GroupPanel = defineComponent({
  props: { conv: String },
  setup(props) {
    const s = reactive({ renaming: false, name: '' });
    return () => {
      const c = state.convs.get(props.conv);
      const g = state.groups.get(props.conv);
      if (!c || !g) return html`<aside class="panel" data-testid="group-panel"></aside>`;
      const role = myRole(props.conv);
      const manager = (role === 'owner' || role === 'admin') && !g.dissolved;
      const members = [...g.members].sort((a, b) => ROLE_ORDER[a.role] - ROLE_ORDER[b.role] || a.joined - b.joined);
      const saveName = async (e) => {
        e.preventDefault();
        if (s.name.trim() && (await renameGroup(props.conv, s.name.trim()))) s.renaming = false;
      };
      return html`<aside class="panel" data-testid="group-panel">
        <header class="panel-head"><h3>${t('groupInfo')}</h3>
          <button class="icon-btn" onClick=${closePanel} aria-label=${t('close')}>${icon('x')}</button></header>
        <div class="panel-body">
          <div class="group-card">
            ${avatar(props.conv, g.name, { size: 'lg', group: true })}
            ${s.renaming
              ? html`<form class="inline-form" onSubmit=${saveName}>
                  <input data-testid="group-name-input" value=${s.name} maxlength="128" onInput=${(e) => (s.name = e.target.value)} />
                  <button class="btn small primary" type="submit" data-testid="group-name-save">${t('save')}</button></form>`
              : html`<h3 class="group-name" data-testid="group-name">${g.name}
                  ${manager ? html`<button class="icon-btn" data-testid="rename" title=${t('rename')} aria-label=${t('rename')}
                    onClick=${() => { s.renaming = true; s.name = g.name; }}>${icon('edit')}</button>` : null}</h3>`}
          </div>
          <div class="section-title">${t('members', { n: members.length })}
            ${manager ? html`<button class="btn small ghost" data-testid="add-members" onClick=${() => openModal({ type: 'addMembers', conv: props.conv })}>${icon('plus')} ${t('add')}</button>` : null}</div>
          <ul class="people compact" data-testid="members">
            ${members.map((m) => {
              const me = m.user.id === state.me.id;
              const canRemove = manager && !me && m.role !== 'owner' && !(role === 'admin' && m.role === 'admin');
              const name = userName(m.user.id);
              return html`<li key=${m.user.id} class="person" data-testid="member" data-user=${m.user.id} data-role=${m.role}>
                ${avatar(m.user.id, name, { size: 'sm', online: m.user.online ?? null })}
                <span class="person-main"><span class="person-name">${name}${me ? ` (${t('you')})` : ''}</span></span>
                ${m.role !== 'member' ? html`<span class=${['chip', m.role]}>${t(m.role)}</span>` : null}
                ${role === 'owner' && !me && !g.dissolved ? html`<details class="menu">
                    <summary class="icon-btn" data-testid="member-menu" aria-label="more">${icon('more')}</summary>
                    <div class="menu-pop" onClick=${closeMenu}>
                      ${m.role === 'member' ? html`<button data-testid="make-admin" onClick=${() => setRole(props.conv, m.user.id, 'admin')}>${t('makeAdmin')}</button>` : null}
                      ${m.role === 'admin' ? html`<button data-testid="make-member" onClick=${() => setRole(props.conv, m.user.id, 'member')}>${t('makeMember')}</button>` : null}
                      <button data-testid="make-owner" onClick=${() => confirmThen(t('confirmOwner', { name }), () => setRole(props.conv, m.user.id, 'owner'))}>${t('makeOwner')}</button>
                      ${canRemove ? html`<button class="danger" data-testid="remove-member" onClick=${() => removeMember(props.conv, m.user.id)}>${t('remove')}</button>` : null}
                    </div></details>`
                  : canRemove ? html`<button class="btn small ghost" data-testid="remove-member" onClick=${() => removeMember(props.conv, m.user.id)}>${t('remove')}</button>` : null}
              </li>`;
            })}
          </ul>
          ${g.dissolved ? null : html`<div class="panel-actions">
            ${role && role !== 'owner' ? html`<button class="btn danger ghost wide" data-testid="leave" onClick=${() => confirmThen(t('confirmLeave'), () => leaveGroup(props.conv))}>${t('leave')}</button>` : null}
            ${role === 'owner' ? html`<button class="btn danger ghost wide" data-testid="dissolve" onClick=${() => confirmThen(t('confirmDissolve'), () => dissolveGroup(props.conv))}>${t('dissolve')}</button>` : null}
          </div>`}
        </div>
      </aside>`;
    };
  },
});

// Choose friends (for a new group, or to add to one).
function friendPicker(s, exclude = new Set()) {
  const friends = [...state.friends.values()].filter((f) => !exclude.has(f.user.id));
  return html`<ul class="people compact picker" data-testid="picker">
    ${friends.length ? null : html`<li class="empty-hint">${t('noFriends')}</li>`}
    ${friends.map((f) => {
      const id = f.user.id;
      const name = userName(id);
      return html`<li key=${id} class="person"><label class="pick">
        <input type="checkbox" data-testid="pick" data-user=${id} checked=${s.picked.has(id)}
          onChange=${(e) => (e.target.checked ? s.picked.add(id) : s.picked.delete(id))} />
        ${avatar(id, name, { size: 'sm' })}<span class="person-name">${name}</span></label></li>`;
    })}
  </ul>`;
}

export const NewGroupModal = defineComponent({
  setup() {
    const s = reactive({ name: '', picked: new Set(), busy: false });
    const close = closeModal;
    const submit = async (e) => {
      e.preventDefault();
      if (!s.name.trim() || s.busy) return;
      s.busy = true;
      const g = await createGroup(s.name.trim(), [...s.picked]);
      s.busy = false;
      if (g) close();
    };
    return () => modalFrame(t('newGroup'), html`<form onSubmit=${submit}>
      <label>${t('groupName')}<input data-testid="new-group-name" required maxlength="128" value=${s.name}
        onInput=${(e) => (s.name = e.target.value)} /></label>
      <div class="section-title">${t('chooseMembers')}</div>
      ${friendPicker(s)}
      <footer class="modal-foot"><button class="btn ghost" type="button" onClick=${close}>${t('cancel')}</button>
        <button class="btn primary" type="submit" data-testid="create-group" disabled=${s.busy || !s.name.trim()}>${t('create')}</button></footer>
    </form>`, close, 'new-group-modal');
  },
});

export const AddMembersModal = defineComponent({
  props: { conv: String },
  setup(props) {
    const s = reactive({ picked: new Set(), busy: false });
    const close = closeModal;
    const submit = async () => {
      if (!s.picked.size) return;
      s.busy = true;
      const ok = await addMembers(props.conv, [...s.picked]);
      s.busy = false;
      if (ok) close();
    };
    return () => {
      const g = state.groups.get(props.conv);
      const inGroup = new Set(g ? g.members.map((m) => m.user.id) : []);
      return modalFrame(t('addMembers'), html`${friendPicker(s, inGroup)}
        <footer class="modal-foot"><button class="btn ghost" onClick=${close}>${t('cancel')}</button>
          <button class="btn primary" data-testid="add-members-go" disabled=${s.busy || !s.picked.size} onClick=${submit}>${t('add')}</button></footer>`,
      close, 'add-members-modal');
    };
  },
});

export const RemarkModal = defineComponent({
  props: { user: String, remark: String },
  setup(props) {
    const s = reactive({ remark: props.remark || '' });
    const close = closeModal;
    const submit = async (e) => {
      e.preventDefault();
      await setRemark(props.user, s.remark.trim());
      close();
    };
    return () => modalFrame(t('setRemark'), html`<form onSubmit=${submit}>
      <label>${t('remark')}<input data-testid="remark-input" maxlength="64" placeholder=${t('remarkPlaceholder')} value=${s.remark}
        onInput=${(e) => (s.remark = e.target.value)} /></label>
      <footer class="modal-foot"><button class="btn ghost" type="button" onClick=${close}>${t('cancel')}</button>
        <button class="btn primary" type="submit" data-testid="remark-save">${t('save')}</button></footer>
    </form>`, close, 'remark-modal');
  },
});
