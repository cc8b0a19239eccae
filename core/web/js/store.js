// @ts-check
// The store: application state (store/state.js) and every action the interface can take, in slices by concern.
// The socket (Connection) feeds it frames and the REST API (Api) lists and history; views read `state` and call
// these actions, never assigning `state` or `rs` themselves (tests/unit/test_web_js.py checks the views for it).
import { installBrowserHooks } from './store/session.js';

export { api, state } from './store/state.js';
export * from './store/ui.js';
export * from './store/users.js';
export * from './store/conversations.js';
export * from './store/messages.js';
export * from './store/groups.js';
export * from './store/replies.js';
export * from './store/session.js';

installBrowserHooks();
