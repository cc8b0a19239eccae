// @ts-check
// Dates, sizes and message previews, in the interface language.
import { i18n, t } from './i18n.js';

const pad = (n) => String(n).padStart(2, '0');

export function dayKey(ts) {
  const d = new Date(ts);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

export function timeOfDay(ts) {
  const d = new Date(ts);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function dayLabel(ts, now = Date.now()) {
  const d = new Date(ts);
  if (dayKey(ts) === dayKey(now)) return t('today');
  if (dayKey(ts) === dayKey(now - 86400000)) return t('yesterday');
  const sameYear = d.getFullYear() === new Date(now).getFullYear();
  if (i18n.lang === 'zh-CN') {
    return sameYear
      ? `${d.getMonth() + 1}月${d.getDate()}日`
      : `${d.getFullYear()}年${d.getMonth() + 1}月${d.getDate()}日`;
  }
  return d.toLocaleDateString('en', { month: 'short', day: 'numeric', year: sameYear ? undefined : 'numeric' });
}

// Short time for the conversation list: today's time, "yesterday", or the date.
export function listTime(ts, now = Date.now()) {
  if (!ts) return '';
  if (dayKey(ts) === dayKey(now)) return timeOfDay(ts);
  if (dayKey(ts) === dayKey(now - 86400000)) return t('yesterday');
  const d = new Date(ts);
  return `${d.getMonth() + 1}/${d.getDate()}`;
}

export function fileSize(bytes) {
  if (!Number.isFinite(bytes)) return '';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB'];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}
