// @ts-check
// Log in / sign up.
import { defineComponent, reactive } from '../../vendor/vue/vue.runtime.esm-browser.prod.js';
import { html } from '../html.js';
import { errorText, i18n, setLang, t } from '../i18n.js';
import { icon } from '../icons.js';
import { login, register, state } from '../store.js';

const USERNAME_RE = /^[A-Za-z0-9_.-]{3,32}$/;

export const LoginView = defineComponent({
  setup() {
    const f = reactive({ mode: 'login', username: '', password: '', displayName: '', busy: false, error: '' });
    const submit = async (e) => {
      e.preventDefault();
      if (f.busy) return;
      f.busy = true;
      f.error = '';
      // The server's rules (core/api/schemas.py RegisterIn), checked here first so the answer is immediate.
      if (f.mode === 'register') {
        if (!USERNAME_RE.test(f.username.trim())) f.error = t('err_invalid_username');
        else if (f.password.length < 8 || f.password.length > 128) f.error = t('err_invalid_password');
        if (f.error) {
          f.busy = false;
          return;
        }
      }
      try {
        if (f.mode === 'login') await login(f.username.trim(), f.password);
        else await register(f.username.trim(), f.password, f.displayName.trim());
      } catch (err) {
        f.error = errorText(err);
      } finally {
        f.busy = false;
      }
    };
    const reg = () => f.mode === 'register';
    const bind = (key) => ({ value: f[key], onInput: (e) => (f[key] = e.target.value) });
    return () => html`<div class="login-page">
      <div class="login-card" data-testid="login">
        <div class="brand">
          <div class="brand-mark">${icon('chat')}</div>
          <div><h1>wsim</h1><p>${t('tagline')}</p></div>
        </div>
        <div class="seg" role="tablist">
          <button role="tab" class=${{ on: f.mode === 'login' }} aria-selected=${f.mode === 'login'} data-testid="tab-login" onClick=${() => (f.mode = 'login')}>${t('login')}</button>
          <button role="tab" class=${{ on: f.mode === 'register' }} aria-selected=${f.mode === 'register'} data-testid="tab-register" onClick=${() => (f.mode = 'register')}>${t('register')}</button>
        </div>
        ${state.notice ? html`<div class="notice">${state.notice}</div>` : null}
        <form onSubmit=${submit}>
          <label>${t('username')}<input name="username" autocomplete="username" required maxlength="64" ...${bind('username')} /></label>
          ${reg() ? html`<p class="pw-rule" data-testid="username-rule">${t('usernameRule')}</p>` : null}
          <label>${t('password')}<input name="password" type="password" required maxlength="256"
            autocomplete=${f.mode === 'login' ? 'current-password' : 'new-password'} ...${bind('password')} /></label>
          ${reg() ? html`<p class=${['pw-rule', { bad: f.password && f.password.length < 8 }]} data-testid="password-rule">${t('passwordRule')}</p>` : null}
          ${f.mode === 'register' ? html`<label>${t('displayName')}<input name="display_name" maxlength="128" ...${bind('displayName')} /></label>` : null}
          ${f.error ? html`<div class="form-error" role="alert" data-testid="login-error">${f.error}</div>` : null}
          <button class="btn primary wide" type="submit" data-testid="submit" disabled=${f.busy}>
            ${f.mode === 'login' ? t('login') : t('createAccount')}</button>
        </form>
        <button class="lang-switch" data-testid="lang" onClick=${() => setLang(i18n.lang === 'zh-CN' ? 'en' : 'zh-CN')}>${icon('globe')} ${t('language')}</button>
      </div>
    </div>`;
  },
});
