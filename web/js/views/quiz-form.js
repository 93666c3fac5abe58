// The host desk's quiz form: write a quiz (or load a quiz file into it), then save
// it to the library (the usual way: build once, play many times), save and play it
// at once, or play it once without keeping it. A library quiz opened with Edit is
// saved over its version, and refused if it was saved elsewhere meanwhile.

import { api, ApiError } from "../api.js";
import { errorBox, fill, h } from "../dom.js";
import { LIMITS } from "../generated/contract.js";
import { asHost, SignedOut } from "../host-session.js";
import { blankQuestion, blankQuiz, contentOf, draftOf, problemsOf } from "../quiz-draft.js";
import { questionFields } from "./question-fields.js";
import { quizFilePanel } from "./quiz-file-panel.js";

const QUIZ = LIMITS.CreateQuizRequest;

/**
 * The form over `draft` (kept by the desk, so a session that ends keeps the quiz).
 * signedOut(): the session has ended; saved(libraryQuiz): a quiz was saved to the
 * library. Returns {el, edit(libraryQuiz), startNew()}.
 */
export function quizForm(draft, { signedOut, saved }) {
  const alert = errorBox(); // beside the buttons that were pressed
  const heading = h("h2", { id: "quiz-form-title" });
  const about = h("p", { class: "hint on-desk" });
  const fields = h("div", { class: "stack" });
  const actions = h("div", { class: "row" });
  const status = h("p", { class: "on-desk", role: "status", "data-testid": "form-status" });
  const form = h(
    "form",
    {
      class: "stack",
      "aria-labelledby": "quiz-form-title",
      novalidate: true,
      onsubmit: (e) => e.preventDefault(), // the buttons act; Enter presses the first
    },
    heading,
    about,
    fields,
    alert.el,
    actions,
    status,
  );

  /** Heading and buttons: writing a new quiz, or editing one of the library. */
  function renderMode() {
    const editing = draft.editing;
    heading.textContent = editing ? `Edit “${editing.title}”` : "New quiz";
    about.textContent = editing
      ? "Saving changes this quiz in your library; games already played from it keep their questions."
      : "";
    about.hidden = !editing;
    const save = button(editing ? "Save changes" : "Save to library", saveOnly, {
      kind: "primary",
      busy: "Saving…",
      failed: "Could not save the quiz.",
    });
    save.type = "submit"; // Enter in a field saves
    fill(
      actions,
      save,
      button("Save and play", saveAndPlay, {
        busy: "Starting…",
        failed: "Could not save and start the quiz.",
      }),
      editing
        ? h("button", { type: "button", class: "link", text: "Write a new quiz instead", onclick: startNew })
        : button("Play once without saving", playOnce, {
            kind: "link",
            busy: "Starting…",
            failed: "Could not create the quiz.",
          }),
    );
  }

  function renderFields() {
    const list = h("div", { class: "stack" });
    const addQuestion = h("button", {
      type: "button",
      text: "Add question",
      onclick: () => {
        draft.questions.push(blankQuestion());
        renderQuestions();
        list.lastElementChild.querySelector("input").focus();
      },
    });
    function renderQuestions() {
      const count = draft.questions.length;
      fill(
        list,
        draft.questions.map((q, i) =>
          questionFields(q, i, {
            count,
            remove: () => {
              draft.questions.splice(i, 1);
              renderQuestions();
              addQuestion.focus();
            },
          }),
        ),
      );
      addQuestion.disabled = count >= QUIZ.questions.max_items;
    }
    renderQuestions();
    fill(
      fields,
      quizFilePanel(load),
      h(
        "div",
        { class: "card stack" },
        h("label", { for: "quiz-title", text: "Title" }),
        h("input", {
          id: "quiz-title",
          value: draft.title,
          required: true,
          maxlength: QUIZ.title.max_len,
          oninput: (e) => (draft.title = e.target.value),
        }),
      ),
      h(
        "div",
        { class: "card stack" },
        // Off by default: results and the board wait for each question's close, so
        // the room cannot learn the answer from the first players to answer.
        checkbox(
          "quiz-instant-feedback",
          "instantFeedback",
          "Instant feedback (practice): players see right or wrong at once and the board moves as they " +
            "answer",
          "Unticked, players learn whether they were right, and the board moves, when each question closes.",
        ),
        checkbox(
          "quiz-late-join",
          "allowLateJoin",
          "Let players join after the start: they begin with 0 points and answer from the open question",
          "Unticked, joining closes when the quiz starts. Either way, the quiz screen can lock the lobby.",
        ),
      ),
      list,
      h("div", { class: "row" }, addQuestion),
    );
  }

  function checkbox(id, key, label, help) {
    return h(
      "div",
      { class: "check" },
      h("input", {
        id,
        type: "checkbox",
        checked: draft[key],
        "aria-describedby": `${id}-help`,
        onchange: (e) => (draft[key] = e.target.checked),
      }),
      h(
        "div",
        {},
        h("label", { for: id, text: label }),
        h("p", { id: `${id}-help`, class: "hint", text: help }),
      ),
    );
  }

  function renderAll() {
    renderMode();
    renderFields();
    status.textContent = "";
  }

  /** Replaces the draft (a quiz file, a library quiz, a blank quiz) and shows it. */
  function replace(next) {
    Object.assign(draft, next);
    alert.clear();
    renderAll();
    form.querySelector("#quiz-title").focus();
  }

  function load(request) {
    replace(draftOf(request)); // a quiz file is a new quiz, never saved over another
    status.textContent = "Loaded the quiz file: check it, then save it to your library.";
  }

  const edit = (libraryQuiz) => {
    const { library_quiz_id: id, version, title } = libraryQuiz;
    replace(draftOf(libraryQuiz, { id, version, title }));
  };
  const startNew = () => replace(blankQuiz());

  // --- Saving and playing ---------------------------------------------------------

  /** A button that checks the draft, then runs `action`, saying `busy` meanwhile
   * and `failed` before the server's reason if it is refused. */
  function button(text, action, { kind = "", busy, failed }) {
    const el = h("button", { type: "button", class: kind, text });
    el.onclick = () => run(el, action, busy, failed);
    return el;
  }

  async function run(pressed, action, busy, failed) {
    const problems = problemsOf(draft);
    if (problems.length) {
      alert.showList("Please fix:", problems);
      return;
    }
    alert.clear();
    status.textContent = "";
    const label = pressed.textContent;
    for (const b of actions.querySelectorAll("button")) b.disabled = true;
    pressed.textContent = busy;
    try {
      await action();
    } catch (error) {
      if (error instanceof SignedOut) return signedOut();
      refused(error, failed);
    } finally {
      if (pressed.isConnected) pressed.textContent = label;
      for (const b of actions.querySelectorAll("button")) b.disabled = false;
    }
  }

  async function save() {
    const content = contentOf(draft);
    const editing = draft.editing;
    const { library_quiz: quiz } = await asHost((token) =>
      editing
        ? api.updateLibraryQuiz(token, editing.id, content, editing.version)
        : api.createLibraryQuiz(token, content),
    );
    draft.editing = { id: quiz.library_quiz_id, version: quiz.version, title: quiz.title };
    renderMode(); // further saves change the saved quiz
    saved(quiz);
    return quiz;
  }

  async function saveOnly() {
    const quiz = await save();
    actions.querySelector("button").focus();
    status.textContent = `Saved “${quiz.title}” to your library.`;
  }

  async function saveAndPlay() {
    const { library_quiz_id: id } = await save();
    const { quiz } = await asHost((token) => api.playLibraryQuiz(token, id));
    location.hash = `#/host/${quiz.quiz_id}`;
  }

  async function playOnce() {
    const { quiz } = await asHost((token) => api.createQuiz(token, contentOf(draft)));
    location.hash = `#/host/${quiz.quiz_id}`;
  }

  function refused(error, failed) {
    const reason = error instanceof ApiError ? error.reason : "";
    if (reason === "QUIZ_CHANGED") {
      alert.show(
        `“${draft.editing.title}” was saved elsewhere since you opened it (in another tab, or with ` +
          "quizctl). Load the saved version, then make your change again.",
        "Not saved.",
      );
      const reload = h("button", {
        type: "button",
        class: "small",
        text: "Load the saved version",
        onclick: async () => {
          reload.disabled = true;
          try {
            const id = draft.editing.id;
            edit((await asHost((token) => api.getLibraryQuiz(token, id))).library_quiz);
          } catch (e) {
            if (e instanceof SignedOut) return signedOut();
            alert.show(e, "Could not load the quiz.");
          }
        },
      });
      alert.el.append(h("p", {}, reload));
    } else if (reason === "LIBRARY_QUIZ_NOT_FOUND") {
      // Deleted meanwhile: the next save adds what the form holds as a new quiz.
      draft.editing = null;
      renderMode();
      alert.show(error, "Not saved.");
      alert.el.append(h("p", { text: "Save again to add it to your library as a new quiz." }));
    } else {
      alert.show(error, failed);
    }
  }

  renderAll();
  return { el: form, edit, startNew };
}
