// The host's quiz library on the desk: each quiz with its question count, games
// played and last change; Play makes a new game of it each time (its own code, its
// big screen), Edit opens it in the quiz form, Export downloads its quiz file, and
// Delete asks first (games already played from it stay).

import { api } from "../api.js";
import { errorBox, fill, h, srOnly } from "../dom.js";
import { asHost, SignedOut } from "../host-session.js";
import { quizFileText } from "../quizfile.js";

const PAGE_SIZE = 20;
const WHEN = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** onEdit(libraryQuiz): open it, with its questions, in the form; onDeleted(id);
 * signedOut(): the session has ended. Returns {el, reload(focusId?)}. */
export function quizLibrary({ onEdit, onDeleted, signedOut }) {
  const alert = errorBox();
  const status = h("p", { class: "hint", role: "status" });
  const list = h(
    "ul",
    { class: "library", "aria-labelledby": "library-title" },
    h("li", { text: "Loading…" }),
  );
  const more = h("button", { type: "button", class: "small", text: "Show more", hidden: true });
  const title = h("h2", { id: "library-title", text: "Your quiz library", tabindex: "-1" });
  const el = h(
    "section",
    { class: "card stack", "aria-labelledby": "library-title" },
    title,
    alert.el,
    status,
    list,
    more,
  );
  let next = ""; // the next page's token
  let generation = 0; // replies of an older reload are dropped

  /** `call(token)` as the host; null, the reason shown, when it is refused. */
  async function asTheHost(call, failed) {
    alert.clear();
    try {
      return await asHost(call);
    } catch (error) {
      if (error instanceof SignedOut) signedOut();
      else alert.show(error, failed);
      return null;
    }
  }

  async function showPage(pageToken, focusId = null) {
    const mine = generation;
    more.disabled = true;
    const reply = await asTheHost(
      (token) => api.listLibraryQuizzes(token, PAGE_SIZE, pageToken),
      "Could not list your quizzes.",
    );
    if (mine !== generation) return;
    more.disabled = false;
    if (!reply) {
      if (!pageToken) fill(list); // "Show more" refused: the quizzes shown stay
      return;
    }
    const quizzes = reply.library_quizzes ?? [];
    if (!pageToken) fill(list);
    list.append(...quizzes.map(entry));
    if (!list.children.length)
      list.append(h("li", { text: "No quizzes yet: write one below and save it to your library." }));
    next = reply.next_page_token ?? "";
    more.hidden = !next;
    if (focusId) list.querySelector(`[data-id="${focusId}"] h3`)?.focus();
  }

  function reload(focusId = null) {
    generation += 1;
    return showPage("", focusId);
  }
  more.onclick = () => showPage(next);

  function entry(quiz) {
    const id = quiz.library_quiz_id;
    const actions = h("div", { class: "row" });
    const row = h(
      "li",
      { class: "library-quiz", "data-id": id },
      h("h3", { text: quiz.title, tabindex: "-1" }),
      h("p", { class: "hint", "data-testid": "library-facts" }, facts(quiz)),
      actions,
    );
    const named = (verb) => [verb, srOnly(` “${quiz.title}”`)];

    /** Runs `work` with the row's buttons disabled. */
    const busy = (work) => async () => {
      for (const b of actions.querySelectorAll("button")) b.disabled = true;
      try {
        await work();
      } finally {
        for (const b of actions.querySelectorAll("button")) b.disabled = false;
      }
    };
    const full = () =>
      asTheHost((token) => api.getLibraryQuiz(token, id), "Could not load the quiz.").then(
        (reply) => reply?.library_quiz,
      );
    const play = busy(async () => {
      const reply = await asTheHost((token) => api.playLibraryQuiz(token, id), "Could not start a game.");
      if (reply) location.hash = `#/host/${reply.quiz.quiz_id}`;
    });
    const edit = busy(async () => {
      const loaded = await full();
      if (loaded) onEdit(loaded);
    });
    const duplicate = busy(async () => {
      const reply = await asTheHost(
        (token) => api.duplicateLibraryQuiz(token, id),
        "Could not duplicate the quiz.",
      );
      if (!reply) return;
      status.textContent = `Added “${reply.library_quiz.title}”.`;
      await reload(reply.library_quiz.library_quiz_id);
    });
    const exportFile = busy(async () => {
      const loaded = await full();
      if (loaded) download(`${fileName(loaded.title)}.yaml`, quizFileText(loaded));
    });

    function showActions() {
      fill(
        actions,
        h("button", { type: "button", class: "primary small", onclick: play }, named("Play")),
        h("button", { type: "button", class: "small", onclick: edit }, named("Edit")),
        h("button", { type: "button", class: "small", onclick: duplicate }, named("Duplicate")),
        h("button", { type: "button", class: "small", onclick: exportFile }, named("Export")),
        h("button", { type: "button", class: "small danger", onclick: confirmDelete }, named("Delete")),
      );
    }

    /** Deleting cannot be undone: it is asked about first. */
    function confirmDelete() {
      const keep = h("button", {
        type: "button",
        class: "small",
        text: "Keep it",
        onclick: () => {
          showActions();
          actions.querySelector(".danger").focus();
        },
      });
      const remove = busy(async () => {
        const deleted = (token) => api.deleteLibraryQuiz(token, id);
        if (!(await asTheHost(deleted, "Could not delete the quiz."))) return;
        status.textContent = `Deleted “${quiz.title}”.`;
        onDeleted(id);
        await reload();
        title.focus();
      });
      fill(
        actions,
        h("p", {
          class: "confirm",
          text: `Delete “${quiz.title}” from your library? Games played from it stay.`,
        }),
        h("button", { type: "button", class: "small danger", onclick: remove }, named("Yes, delete")),
        keep,
      );
      keep.focus();
    }

    showActions();
    return row;
  }

  reload();
  return { el, reload };
}

/** "3 questions · 2 games played · changed 5 Mar 2025, 14:02", and its settings. */
function facts(quiz) {
  const questions = quiz.question_count;
  const games = quiz.games_played;
  const settings = [quiz.instant_feedback && "instant feedback", quiz.allow_late_join && "late joining"];
  return [
    `${questions} ${questions === 1 ? "question" : "questions"} · `,
    games ? `${games} ${games === 1 ? "game" : "games"} played` : "not played yet",
    " · changed ",
    h("time", { datetime: quiz.update_time, text: WHEN.format(new Date(quiz.update_time)) }),
    settings.filter(Boolean).map((s) => ` · ${s}`),
  ];
}

/** A file name from a title: "Capitals of Europe!" -> "capitals-of-europe". */
const fileName = (title) =>
  title
    .normalize("NFKD")
    .replace(/\p{M}/gu, "") // "é" is "e" and an accent now: the accent goes
    .replace(/[^\p{L}\p{N}]+/gu, "-")
    .replace(/^-|-$/g, "")
    .toLowerCase() || "quiz";

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "application/yaml" }));
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  // Revoked later, not at once: the browser may still be reading it for the download.
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
