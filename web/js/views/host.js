// The host's desk: sign in (host-sign-in.js), the quiz library (host-library.js),
// the quiz form (quiz-form.js) that writes a quiz or edits one of the library, and
// the host's recent games, each with its report (host-report.js).

import { api } from "../api.js";
import { announce, fill, focusHeading, h } from "../dom.js";
import { asHost, signedInHost, SignedOut, signOut, whySignedOut } from "../host-session.js";
import { blankQuiz } from "../quiz-draft.js";
import { quizLibrary } from "./host-library.js";
import { quizReport } from "./host-report.js";
import { signInPanel } from "./host-sign-in.js";
import { quizForm } from "./quiz-form.js";

const STATE_NAMES = {
  QUIZ_STATE_OPEN: "open for joining",
  QUIZ_STATE_RUNNING: "running",
  QUIZ_STATE_CLOSED: "closed",
};

export function mountHost(root) {
  const body = h("div", { class: "stack" });
  const draft = blankQuiz(); // kept if the session ends before the quiz is saved
  fill(root, h("div", { class: "host-desk" }, h("h1", { text: "Host a quiz" }), body));

  function showDesk() {
    render();
    focusHeading(root);
  }

  /** Back to the sign-in form, saying why (the host asked, or the session ended). */
  function signedOut() {
    showDesk();
    announce(whySignedOut() ?? "Signed out.");
  }

  function render() {
    const host = signedInHost();
    if (!host) {
      fill(body, signInPanel(showDesk));
      return;
    }
    const out = h("button", {
      type: "button",
      class: "link",
      text: "Sign out",
      onclick: async () => {
        out.disabled = true;
        await signOut();
        Object.assign(draft, blankQuiz()); // the next host starts afresh
        signedOut();
      },
    });
    const library = quizLibrary({
      onEdit: (quiz) => form.edit(quiz),
      onDeleted: (id) => {
        // The quiz being edited is gone: the form starts afresh rather than save it back.
        if (draft.editing?.id === id) form.startNew();
      },
      signedOut,
    });
    const form = quizForm(draft, { signedOut, saved: () => library.reload() });
    fill(
      body,
      h(
        "p",
        { class: "signed-in" },
        "Signed in as ",
        h("strong", { text: host.name }),
        host.email ? ` (${host.email}). ` : " with a token from quizctl. ",
        out,
      ),
      library.el,
      form.el,
      recentGames(signedOut),
    );
  }

  render();
  return () => {};
}

/** The host's own games, newest first (their history): back to a game's big
 * screen, or its report once it has started. */
function recentGames(signedOut) {
  const list = h("ul", { class: "quiz-list" }, h("li", { text: "Loading…" }));
  const report = h("div");
  const section = h(
    "section",
    { class: "card stack", "aria-labelledby": "games-title" },
    h("h2", { id: "games-title", text: "Your recent games" }),
    list,
    report,
  );
  const showReport = (quiz) => {
    fill(report, quizReport(quiz, { signedOut, onClose: () => fill(report) }));
    const title = report.querySelector("#report-title");
    title.setAttribute("tabindex", "-1");
    title.focus();
  };
  const game = (q) =>
    h(
      "li",
      {},
      h("a", { href: `#/host/${q.quiz_id}`, text: q.title }),
      ` · ${q.quiz_id} · ${STATE_NAMES[q.state] ?? q.state} · ${q.player_count ?? 0} players `,
      q.state !== "QUIZ_STATE_OPEN" &&
        h("button", {
          type: "button",
          class: "small",
          text: "Report",
          "aria-label": `Report of ${q.title} (${q.quiz_id})`,
          onclick: () => showReport(q),
        }),
    );
  asHost((token) => api.listMyQuizzes(token, 20))
    .then(({ quizzes = [] }) => fill(list, quizzes.length ? quizzes.map(game) : h("li", { text: "None yet." })))
    .catch((error) => {
      if (error instanceof SignedOut) signedOut();
      else fill(list, h("li", { class: "field-error", text: `Could not list games: ${error.message}` }));
    });
  return section;
}
