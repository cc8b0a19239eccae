// @ts-check
// Entry point: mount the root and resume a stored login.
import { createApp } from '../vendor/vue/vue.runtime.esm-browser.prod.js';
import { loadConfig, resumeSession } from './store.js';
import { Root } from './views/app.js';

createApp(Root).mount('#app');
loadConfig();
resumeSession();
