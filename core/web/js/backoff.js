// Reconnect delays: exponential backoff with full jitter (delay = random(0, min(cap, base * 2^attempt))), as in
// core/sdk/client.py. Full jitter spreads a crowd of clients that lost the same server over the whole window
// instead of having them return in synchronized waves. `random` is injectable for tests.
export function backoffDelayMs(attempt, { baseMs = 1000, capMs = 30000, random = Math.random } = {}) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
