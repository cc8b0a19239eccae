// @ts-check
// One device id per browser tab (docs/protocol.md: a device is an installation or a tab). It lives in
// sessionStorage, so a reload keeps it (and with it the tab's outbox and cursors). A duplicated tab inherits a
// copy of sessionStorage, so the id is also held as a Web Lock for the tab's lifetime: a tab that cannot get the
// lock within a moment knows another live tab owns the id and makes a new one (two sockets with one device id
// would keep replacing each other, close code 4011).
const KEY = 'wsim.device';
let held = null; // {id, release}

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

function lockFor(id, waitMs) {
  if (!navigator.locks || !navigator.locks.request) return Promise.resolve(() => {});
  return new Promise((resolve) => {
    const signal = AbortSignal.timeout(waitMs);
    navigator.locks
      .request(`wsim-device-${id}`, { signal }, () => new Promise((release) => resolve(release)))
      .catch(() => resolve(null)); // timed out: someone else holds it
  });
}

export async function acquireDevice() {
  if (held) return held.id;
  let id = sessionStorage.getItem(KEY);
  if (id && /^[A-Za-z0-9_-]{1,64}$/.test(id)) {
    const release = await lockFor(id, 1500); // a reload's previous page may still be letting go
    if (release) {
      held = { id, release };
      return id;
    }
  }
  for (;;) {
    id = randomId();
    const release = await lockFor(id, 1500);
    if (release) {
      sessionStorage.setItem(KEY, id);
      held = { id, release };
      return id;
    }
  }
}

export function releaseDevice() {
  // The id stays for this tab (logging in again keeps it); the lock is kept as long as the tab lives.
}
