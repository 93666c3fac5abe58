// The start page: type a quiz code to play, rejoin a quiz from this browser, or host.

import { errorBox, fill, h } from "../dom.js";
import { playerSessions } from "../storage.js";

/** A code as people type it ("k7qx 2m9a") -> "K7QX2M9A", or null if it cannot be one. */
export function normalizeCode(text) {
  const code = text.replace(/[\s-]/g, "").toUpperCase();
  return /^[A-Z0-9]{1,16}$/.test(code) ? code : null;
}

export function mountHome(root) {
  const alert = errorBox();
  const input = h("input", {
    id: "quiz-code",
    name: "code",
    required: true,
    autocomplete: "off",
    autocapitalize: "characters",
    spellcheck: "false",
    maxlength: 20,
    "aria-describedby": "quiz-code-help",
  });
  const form = h(
    "form",
    {
      class: "card stack",
      "aria-labelledby": "join-title",
      onsubmit: (e) => {
        e.preventDefault();
        const code = normalizeCode(input.value);
        if (!code) {
          alert.show(
            input.value.trim()
              ? "A quiz code has only letters and digits, like K7QX2M9A."
              : "Type the quiz code first.",
          );
          input.focus();
          return;
        }
        location.hash = `#/play/${code}`;
      },
    },
    h("h2", { id: "join-title", text: "Play" }),
    h("label", { for: "quiz-code", text: "Quiz code" }),
    input,
    h("p", { id: "quiz-code-help", class: "hint", text: "The code on the host's screen, like K7QX2M9A." }),
    h("button", { type: "submit", class: "primary", text: "Go" }),
  );
  const joined = playerSessions.all();
  fill(
    root,
    h(
      "div",
      { class: "home stack" },
      h("h1", { text: "Real-time quizzes, live leaderboard" }),
      alert.el,
      form,
      joined.length > 0 &&
        h(
          "section",
          { class: "card stack", "aria-labelledby": "rejoin-title" },
          h("h2", { id: "rejoin-title", text: "Back to a quiz" }),
          h(
            "ul",
            { class: "quiz-list" },
            joined.map(({ quizId, nickname }) =>
              h("li", {}, h("a", { href: `#/play/${quizId}`, text: `${quizId} as ${nickname}` })),
            ),
          ),
        ),
      h(
        "section",
        { class: "card stack", "aria-labelledby": "host-title" },
        h("h2", { id: "host-title", text: "Host" }),
        h("p", { text: "Create a quiz, share its code and run it on the big screen." }),
        h("p", {}, h("a", { class: "button", href: "#/host", text: "Host a quiz" })),
      ),
    ),
  );
  return () => {};
}
