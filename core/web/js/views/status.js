// @ts-check
// The connection state, shown as it is: a dot in the list header and a banner over the chat when not connected.
import { defineComponent } from '../../vendor/vue/vue.runtime.esm-browser.prod.js';
import { html } from '../html.js';
import { t } from '../i18n.js';
import { icon } from '../icons.js';
import { reconnectNow, state } from '../store.js';

export function statusText() {
  const s = state.status;
  switch (s.state) {
    case 'connected': return t('connected');
    case 'syncing': return t('syncing');
    case 'connecting':
    case 'authenticating': return s.attempt ? t('reconnecting') : t('connecting');
    case 'waiting': return t('reconnectingIn', { n: Math.max(1, Math.ceil((s.retryAt - state.now) / 1000)) });
    case 'replaced': return t('replaced');
    default: return t('stopped');
  }
}

export const StatusPill = defineComponent({
  setup() {
    return () => html`<span class=${['status-pill', state.status.state]} data-testid="conn-status" data-state=${state.status.state}
        title=${state.status.node ? `node ${state.status.node}` : ''}>
      <i></i><span>${statusText()}</span></span>`;
  },
});

export const ConnectionBanner = defineComponent({
  setup() {
    return () => {
      const s = state.status.state;
      if (s === 'connected') return null;
      return html`<div class=${['conn-banner', s]} role="status" data-testid="conn-banner" data-state=${s}>
        <span>${statusText()}</span>
        ${s === 'waiting' ? html`<button class="btn small primary" data-testid="reconnect-now" onClick=${reconnectNow}>${icon('refresh')} ${t('reconnectNow')}</button>` : null}
      </div>`;
    };
  },
});
