// Leaderboard lists that animate rank changes (FLIP: measure rows, reorder, then
// slide each row from where it was), and the final podium.

import { fill, formatNumber, h, ordinal, srOnly } from "./dom.js";

const reducedMotion = () => window.matchMedia("(prefers-reduced-motion: reduce)").matches;

export class Leaderboard {
  /** `label` names the list for screen readers; `me` highlights that player id. */
  constructor({ label, me = null, large = false, testId = "leaderboard" }) {
    this.me = me;
    this.rows = new Map(); // player_id -> {li, rank, score}
    this.el = h("ol", {
      class: `leaderboard${large ? " large" : ""}`,
      "aria-label": label,
      "data-testid": testId,
    });
  }

  /** entries: [{rank, player_id, nickname, score}], best first. */
  update(entries = []) {
    const before = new Map();
    for (const [id, row] of this.rows) before.set(id, row.li.getBoundingClientRect().top);

    const seen = new Set();
    for (const entry of entries) {
      seen.add(entry.player_id);
      let row = this.rows.get(entry.player_id);
      if (!row) {
        row = { li: this.row(entry), rank: entry.rank, score: entry.score };
        this.rows.set(entry.player_id, row);
      }
      this.refresh(row, entry);
      this.el.append(row.li); // moves existing rows into the new order
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.li.remove();
        this.rows.delete(id);
      }
    }
    if (reducedMotion()) return;
    for (const [id, top] of before) {
      const row = this.rows.get(id);
      if (!row) continue;
      const dy = top - row.li.getBoundingClientRect().top;
      if (Math.abs(dy) < 1) continue;
      row.li.animate([{ transform: `translateY(${dy}px)` }, { transform: "none" }], {
        duration: 650,
        easing: "cubic-bezier(.2,.8,.2,1)",
      });
    }
  }

  row(entry) {
    return h(
      "li",
      { class: entry.player_id === this.me ? "entry me" : "entry", "data-player": entry.player_id },
      h("span", { class: "entry-rank" }),
      h("span", { class: "entry-name" }),
      h("span", { class: "entry-move", "aria-hidden": "true" }),
      h("span", { class: "entry-score" }),
    );
  }

  refresh(row, entry) {
    const [rank, name, move, score] = row.li.children;
    const climbed = row.rank - entry.rank;
    fill(rank, srOnly("Rank "), `${entry.rank}`);
    name.textContent = entry.nickname + (entry.player_id === this.me ? " (you)" : "");
    fill(score, formatNumber(entry.score), srOnly(" points"));
    if (climbed !== 0) {
      move.textContent = climbed > 0 ? `▲${climbed}` : `▼${-climbed}`;
      move.className = `entry-move ${climbed > 0 ? "up" : "down"}`;
    } else if (entry.score !== row.score) {
      move.textContent = "";
      move.className = "entry-move";
    }
    if (entry.score !== row.score && !reducedMotion()) {
      score.animate([{ color: "var(--accent-strong)", transform: "scale(1.25)" }, { transform: "none" }], {
        duration: 700,
      });
    }
    row.rank = entry.rank;
    row.score = entry.score;
  }
}

/** The top three on steps (2nd, 1st, 3rd from the left), then everyone else's rank. */
export function podium(entries = [], { me = null } = {}) {
  const top = entries.slice(0, 3);
  const order = [top[1], top[0], top[2]].filter(Boolean);
  return h(
    "ol",
    { class: "podium", "aria-label": "Podium", "data-testid": "podium" },
    order.map((entry) =>
      h(
        "li",
        {
          class: `step step-${entry.rank}${entry.player_id === me ? " me" : ""}`,
          style: `order: ${[2, 1, 3].indexOf(entry.rank)}`,
          value: entry.rank,
        },
        h("span", { class: "step-name", text: entry.nickname }),
        h("span", { class: "step-score", text: `${formatNumber(entry.score)} pts` }),
        h("span", { class: "step-block", text: ordinal(entry.rank) }),
      ),
    ),
  );
}

/** "just above / you / just below" rows, from GetPlayerRank. */
export function neighbours(rank, me) {
  const rows = [...(rank.above ?? []), rank.player, ...(rank.below ?? [])].filter(Boolean);
  const list = h("ol", {
    class: "neighbours",
    "aria-label": "Players around you",
    "data-testid": "neighbours",
  });
  return fill(
    list,
    rows.map((entry) =>
      h(
        "li",
        { class: entry.player_id === me ? "entry me" : "entry", value: entry.rank },
        h("span", { class: "entry-rank" }, srOnly("Rank "), `${entry.rank}`),
        h("span", {
          class: "entry-name",
          text: entry.player_id === me ? `${entry.nickname} (you)` : entry.nickname,
        }),
        h("span", { class: "entry-score" }, formatNumber(entry.score), srOnly(" points")),
      ),
    ),
  );
}
