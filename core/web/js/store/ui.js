// @ts-check
// Interface state that is not data: tabs, the side panel, modals, the lightbox, toasts and the clock views use.
import { errorText } from '../i18n.js';
import { state } from './state.js';

const TOAST_MS = 3000;
const TOASTS_SHOWN = 3;
let toastSeq = 0;

/**
 * @param {string} text
 * @param {string} [kind] info | error
 */
export function toast(text, kind = 'info') {
  const id = ++toastSeq;
  state.toasts.push({ id, text, kind });
  if (state.toasts.length > TOASTS_SHOWN) state.toasts.shift();
  setTimeout(() => {
    const i = state.toasts.findIndex((x) => x.id === id);
    if (i >= 0) state.toasts.splice(i, 1);
  }, TOAST_MS);
}

/** A failed request, told in the reader's language. @param {unknown} err */
export function fail(err) {
  toast(errorText(err), 'error');
}

/** @param {'chats' | 'contacts'} tab */
export function showTab(tab) {
  state.tab = tab;
}

/** The contacts' sub-tab lives here so that it survives switching to the chats and back. @param {string} sub */
export function showContactsTab(sub) {
  state.contactsTab = sub;
}

/** @param {any} modal {type: 'newGroup' | 'addMembers' | 'remark' | 'confirm', ...} */
export function openModal(modal) {
  state.modal = modal;
}

export function closeModal() {
  state.modal = null;
}

/**
 * Yes/no confirmation; `ok` runs on yes.
 * @param {string} text
 * @param {() => unknown} ok
 */
export function confirmThen(text, ok) {
  openModal({ type: 'confirm', text, ok });
}

export function toggleGroupPanel() {
  state.panel = state.panel === 'group' ? null : 'group';
}

export function closePanel() {
  state.panel = null;
}

/**
 * @param {string} url
 * @param {string} name
 */
export function showLightbox(url, name) {
  state.lightbox = { url, name };
}

export function closeLightbox() {
  state.lightbox = null;
}

/** Relative times and typing indicators are computed against `state.now`, ticked twice a second. */
export function tickClock() {
  state.now = Date.now();
}

export function resetUi() {
  Object.assign(state, { panel: null, modal: null, lightbox: null });
}
