// @ts-check
// Desktop notifications (the Notification API) for messages that arrive while the tab is not in front.
// Permission is asked only from a click on the offer in the conversation list (browsers ignore or penalize a prompt
// that is not a user gesture, and a prompt at page load is the pattern people learn to deny). Nothing is shown
// while the tab has focus: the chat itself is the notification then. Muting is per conversation, per account, kept
// in localStorage.
import { reactive } from '../vendor/vue/vue.runtime.esm-browser.prod.js';

const supported = typeof window.Notification === 'function';

export const notifyState = reactive({
  permission: supported ? Notification.permission : 'unsupported',
  dismissed: localStorage.getItem('wsim.notify.dismissed') === '1',
  muted: new Set(),
});

let mutedKey = '';

// Load the muted conversations of this account (called when a session starts).
export function loadMuted(userId) {
  mutedKey = `wsim.muted.${userId}`;
  let list = [];
  try {
    list = JSON.parse(localStorage.getItem(mutedKey) || '[]');
  } catch {
    list = [];
  }
  notifyState.muted = new Set(Array.isArray(list) ? list : []);
}

export function isMuted(conv) {
  return notifyState.muted.has(conv);
}

export function toggleMute(conv) {
  if (notifyState.muted.has(conv)) notifyState.muted.delete(conv);
  else notifyState.muted.add(conv);
  if (mutedKey) localStorage.setItem(mutedKey, JSON.stringify([...notifyState.muted]));
}

// The offer is shown when notifications could be turned on and nobody said no yet.
export function shouldOffer() {
  return notifyState.permission === 'default' && !notifyState.dismissed;
}

export async function askPermission() {
  if (!supported) return;
  try {
    notifyState.permission = await Notification.requestPermission();
  } catch {
    notifyState.permission = Notification.permission;
  }
}

export function dismissOffer() {
  notifyState.dismissed = true;
  localStorage.setItem('wsim.notify.dismissed', '1');
}

function tabInFront() {
  return document.visibilityState === 'visible' && document.hasFocus();
}

// Show one notification for a conversation (a newer one replaces it: same tag). `onOpen` runs on click.
export function notify(conv, title, body, onOpen) {
  if (!supported || notifyState.permission !== 'granted' || isMuted(conv) || tabInFront()) return;
  try {
    const n = new Notification(title, { body, tag: conv, renotify: true, icon: '/app/icon.svg' });
    n.onclick = () => {
      window.focus();
      onOpen();
      n.close();
    };
  } catch {
    /* some platforms only allow notifications from a service worker: then there are none */
  }
}
