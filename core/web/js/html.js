// @ts-check
// Markup for Vue render functions without a template compiler (see vendor/README.md): htm turns tagged
// templates into h() calls. Interpolated values become text nodes or DOM properties, never parsed markup.
import { h } from '../vendor/vue/vue.runtime.esm-browser.prod.js';
import htm from '../vendor/htm/htm.module.js';

export const html = htm.bind(h);
