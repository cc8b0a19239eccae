// The few browser globals the client's modules touch when loaded, for running them under `node --test`: storage
// in memory, no-op event targets, a visible document. Import it before any client module.
class MemoryStorage {
  constructor() {
    this.items = new Map();
  }

  getItem(k) {
    return this.items.has(k) ? this.items.get(k) : null;
  }

  setItem(k, v) {
    this.items.set(k, String(v));
  }

  removeItem(k) {
    this.items.delete(k);
  }

  clear() {
    this.items.clear();
  }
}

const noop = () => {};
const events = { addEventListener: noop, removeEventListener: noop };

globalThis.window = Object.assign(globalThis.window || {}, events);
globalThis.localStorage = new MemoryStorage();
globalThis.sessionStorage = new MemoryStorage();
globalThis.document = {
  ...events,
  visibilityState: 'visible',
  hasFocus: () => true,
  documentElement: {},
  createElement: () => ({ content: {}, setAttribute: noop }), // Vue's runtime-dom probes one at load
};
if (!globalThis.navigator) globalThis.navigator = {};
