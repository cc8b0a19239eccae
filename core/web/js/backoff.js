// @ts-check
// Reconnect delays: exponential backoff with full jitter (delay = random(0, min(cap, base * 2^attempt))), as in
// core/sdk/client.py. Full jitter spreads a crowd of clients that lost the same server over the whole window
// instead of having them return in synchronized waves. `random` is injectable for tests.
/**
 * @param {number} attempt
 * @param {{baseMs?: number, capMs?: number, random?: () => number}} [opts]
 */
export function backoffDelayMs(attempt, { baseMs = 1000, capMs = 30000, random = Math.random } = {}) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

// The delay before reconnect attempt `attempt` (0 = the first after a drop). The first is immediate: most drops are
// a blip or a server that restarts at once, and waiting a random second there only adds latency; a failed first
// attempt then backs off with full jitter from 1 s up.
/**
 * @param {number} attempt
 * @param {{baseMs?: number, capMs?: number, random?: () => number}} [opts]
 */
export function reconnectDelayMs(attempt, opts = {}) {
  return attempt === 0 ? 0 : backoffDelayMs(attempt - 1, opts);
}
