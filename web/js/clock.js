// Countdowns run on the server's clock: deadlines are server instants, so the
// browser measures its offset from a response's server_time and counts from there.

import { millis } from "./api.js";
import { h } from "./dom.js";

export class ServerClock {
  constructor() {
    this.offset = 0;
  }

  /** `serverTime` from a response; `sentAt`/`receivedAt`: Date.now() around the call. */
  sync(serverTime, sentAt, receivedAt) {
    const server = millis(serverTime);
    // The server stamped the reply somewhere in the round trip: assume the middle.
    if (!Number.isNaN(server)) this.offset = server - (sentAt + receivedAt) / 2;
  }

  now() {
    return Date.now() + this.offset;
  }
}

/** Calls `fn` and syncs `clock` with the quiz's server_time in its reply. */
export async function timed(clock, fn) {
  const sentAt = Date.now();
  const reply = await fn();
  clock.sync(reply.quiz?.server_time, sentAt, Date.now());
  return reply;
}

/**
 * A countdown to `deadline` (server ms): seconds left and a shrinking bar.
 * Calls onEnd once when it reaches zero. role=timer is not announced every tick.
 */
export function countdown({ deadline, limitMs, clock, onEnd = () => {}, large = false }) {
  const seconds = h("span", { class: "countdown-seconds" });
  const fill = h("span", { class: "countdown-fill" });
  const el = h(
    "div",
    { class: `countdown${large ? " large" : ""}`, role: "timer", "aria-label": "Time left" },
    seconds,
    h("span", { class: "countdown-bar", "aria-hidden": "true" }, fill),
  );
  let ended = false;
  const tick = () => {
    const left = Math.max(0, deadline - clock.now());
    seconds.textContent = `${Math.ceil(left / 1000)}`;
    fill.style.transform = `scaleX(${limitMs > 0 ? Math.min(1, left / limitMs) : 0})`;
    el.classList.toggle("urgent", left > 0 && left <= 3000);
    if (left === 0 && !ended) {
      ended = true;
      clearInterval(timer);
      onEnd();
    }
  };
  const timer = setInterval(tick, 100);
  tick();
  return {
    el,
    stop() {
      clearInterval(timer);
    },
  };
}
