// @ts-check
// REST client and the login session shared by the tabs of one browser.
//
// Tokens live in localStorage so every tab of the browser shares one login (each tab is still its own device on
// the socket). Refresh tokens are single-use (reuse revokes the session), so tabs must never refresh at the same
// time with the same token: a refresh runs under a Web Lock, re-reads storage inside the lock and adopts the
// tokens another tab just got instead of spending the old refresh token twice.

const AUTH_KEY = 'wsim.auth';
const REFRESH_MARGIN_MS = 60_000;

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function readAuth() {
  try {
    const v = JSON.parse(localStorage.getItem(AUTH_KEY) || 'null');
    return v && typeof v.access_token === 'string' && typeof v.refresh_token === 'string' ? v : null;
  } catch {
    return null;
  }
}

async function withLock(name, fn) {
  if (navigator.locks && navigator.locks.request) return navigator.locks.request(name, fn);
  return fn(); // not a secure context (plain http on a LAN address): no cross-tab lock available
}

async function errorFrom(resp) {
  let code = 'http';
  let message = `HTTP ${resp.status}`;
  try {
    const body = await resp.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch {
    /* not JSON: keep the status */
  }
  return new ApiError(code, message, resp.status);
}

export class Api {
  constructor() {
    this.auth = readAuth();
    this.listeners = new Set(); // called with the new auth (or null) when another tab changes it
    this._refreshing = null;
    window.addEventListener('storage', (e) => {
      if (e.key !== AUTH_KEY) return;
      this.auth = readAuth();
      this._emit();
    });
  }

  onAuthChange(fn) {
    this.listeners.add(fn);
  }

  _emit() {
    for (const fn of this.listeners) fn(this.auth);
  }

  _save(body) {
    this.auth = {
      user: body.user,
      access_token: body.access_token,
      access_expires: body.access_expires,
      refresh_token: body.refresh_token,
      refresh_expires: body.refresh_expires,
      session: body.session,
    };
    localStorage.setItem(AUTH_KEY, JSON.stringify(this.auth));
  }

  clearAuth() {
    this.auth = null;
    localStorage.removeItem(AUTH_KEY);
  }

  get loggedIn() {
    return this.auth !== null;
  }

  get me() {
    return this.auth ? this.auth.user : null;
  }

  accessExpiresSoon(marginMs = REFRESH_MARGIN_MS) {
    return !this.auth || this.auth.access_expires - Date.now() < marginMs;
  }

  // Get fresh tokens; concurrent callers in this tab share one request, other tabs are serialized by the lock.
  refresh() {
    if (!this._refreshing) {
      this._refreshing = this._refresh().finally(() => {
        this._refreshing = null;
      });
    }
    return this._refreshing;
  }

  async _refresh() {
    const used = this.auth && this.auth.refresh_token;
    await withLock('wsim-token-refresh', async () => {
      const stored = readAuth();
      if (!stored) {
        this.auth = null;
        throw new ApiError('unauthorized', 'logged out', 401);
      }
      if (stored.refresh_token !== used && stored.access_expires - Date.now() > REFRESH_MARGIN_MS) {
        this.auth = stored; // another tab refreshed while we waited: use its tokens
        return;
      }
      const resp = await fetch('/api/auth/refresh', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ refresh_token: stored.refresh_token }),
      });
      if (!resp.ok) {
        const err = await errorFrom(resp);
        if (resp.status === 401) this.clearAuth();
        throw err;
      }
      this._save(await resp.json());
    });
    return this.auth;
  }

  async login(username, password, device) {
    const body = await this.request('POST', '/api/auth/login', { username, password, device }, { auth: false });
    this._save(body);
    return body;
  }

  async register(username, password, displayName, device) {
    const body = await this.request(
      'POST',
      '/api/auth/register',
      { username, password, display_name: displayName || null, device },
      { auth: false },
    );
    this._save(body);
    return body;
  }

  async logout() {
    try {
      await this.request('POST', '/api/auth/logout');
    } finally {
      this.clearAuth();
    }
  }

  // JSON request; with auth, refreshes ahead of expiry and, on a 401, refreshes once and retries once.
  async request(method, path, body, { auth = true, query } = {}) {
    let url = path;
    if (query) {
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) qs.set(k, String(v));
      url += `?${qs}`;
    }
    const send = async () => {
      const headers = {};
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      if (auth && this.auth) headers.Authorization = `Bearer ${this.auth.access_token}`;
      return fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    };
    if (auth) {
      if (!this.auth) throw new ApiError('unauthorized', 'not logged in', 401);
      if (this.accessExpiresSoon(10_000)) await this.refresh();
    }
    let resp = await send();
    if (auth && resp.status === 401) {
      await this.refresh();
      resp = await send();
    }
    if (!resp.ok) throw await errorFrom(resp);
    if (resp.status === 204) return null;
    return resp.json();
  }

  // Upload with progress events (fetch has no upload progress): resolves to the file's metadata.
  // Returns {promise, abort}.
  upload(file, onProgress) {
    let xhr = null;
    let aborted = false;
    const attempt = () =>
      new Promise((resolve, reject) => {
        xhr = new XMLHttpRequest();
        xhr.open('POST', '/api/files');
        xhr.setRequestHeader('Authorization', `Bearer ${this.auth.access_token}`);
        xhr.responseType = 'json';
        xhr.upload.onprogress = (e) => {
          if (e.lengthComputable) onProgress(e.loaded / e.total);
        };
        xhr.onload = () => {
          const b = xhr.response;
          if (xhr.status >= 200 && xhr.status < 300) resolve(b);
          else {
            const e = b && b.error ? b.error : { code: 'http', message: `HTTP ${xhr.status}` };
            reject(new ApiError(e.code, e.message, xhr.status));
          }
        };
        xhr.onerror = () => reject(new ApiError('network', 'upload failed: network error', 0));
        xhr.onabort = () => reject(new ApiError('aborted', 'upload cancelled', 0));
        const form = new FormData();
        form.append('file', file, file.name);
        xhr.send(form);
      });
    const promise = (async () => {
      if (this.accessExpiresSoon(10_000)) await this.refresh();
      try {
        return await attempt();
      } catch (err) {
        if (err.status !== 401 || aborted) throw err;
        await this.refresh();
        onProgress(0);
        return attempt();
      }
    })();
    return {
      promise,
      abort: () => {
        aborted = true;
        if (xhr) xhr.abort();
      },
    };
  }
}
