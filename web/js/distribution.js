// How the players answered one question, once it has closed: a bar per choice with
// its count. The right choice is said in words (and to screen readers), not only
// in colour. Drawn on the big screen, the phones and the host's report.

import { formatNumber, h } from "./dom.js";

const players = (n) => `${formatNumber(n)} ${n === 1 ? "player" : "players"}`;

/**
 * `counts`: how many chose each choice, in choice order (a QuestionClosed's or a
 * QuestionReport's choice_counts). Null while they are not known: a screen that
 * was opened after the question closed has only the correct choice.
 */
export function distribution(choices, counts, correct, { large = false } = {}) {
  if (!counts) return null;
  const of = (i) => Number(counts[i] ?? 0);
  const most = Math.max(1, ...choices.map((_, i) => of(i)));
  return h(
    "ul",
    { class: `distribution${large ? " big" : ""}`, "aria-label": "How everyone answered", "data-testid": "distribution" },
    choices.map((text, i) => {
      const right = i === correct;
      return h(
        "li",
        {
          class: `bar${right ? " correct" : ""}`,
          "aria-label": `${text}: ${players(of(i))}${right ? " (the correct answer)" : ""}`,
          "data-count": of(i),
        },
        h("span", { class: "bar-label", "aria-hidden": "true" }, text, right && h("strong", { text: " ✓ right answer" })),
        h(
          "span",
          { class: "bar-track", "aria-hidden": "true" },
          h("span", { class: `bar-fill choice-${i}`, style: `width: ${(of(i) / most) * 100}%` }),
        ),
        h("span", { class: "bar-count", "aria-hidden": "true", text: formatNumber(of(i)) }),
      );
    }),
  );
}
