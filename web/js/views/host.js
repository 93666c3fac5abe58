// The host's desk: sign in with a host token, write a quiz (in the form, or pasted
// as YAML/JSON), and open quizzes created earlier.

import { api } from "../api.js";
import { errorBox, fill, focusHeading, h } from "../dom.js";
import { parseQuizText, QuizFileError } from "../quizfile.js";
import { hostToken, tokenClaims } from "../storage.js";

const LETTERS = "ABCDEF";
const STATE_NAMES = {
  QUIZ_STATE_OPEN: "open for joining",
  QUIZ_STATE_RUNNING: "running",
  QUIZ_STATE_CLOSED: "closed",
};

/** The signed-in host's name, or null with the reason the stored token is unusable. */
export function currentHost() {
  const token = hostToken.get();
  if (!token) return { host: null, token: null, problem: null };
  const problem = tokenProblem(token);
  return problem
    ? { host: null, token: null, problem }
    : { host: tokenClaims(token).sub, token, problem: null };
}

function tokenProblem(token) {
  const claims = tokenClaims(token);
  if (!claims) return "That does not look like a token: paste the whole line quizctl printed.";
  if (claims.role !== "host") return `That is a ${claims.role ?? "unknown"} token; a host token is needed.`;
  if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now())
    return "That token has expired; create a new one.";
  return null;
}

export function mountHost(root) {
  const alert = errorBox();
  const body = h("div", { class: "stack" });
  fill(root, h("div", { class: "host-desk" }, h("h1", { text: "Host a quiz" }), alert.el, body));

  function render() {
    const { host, token, problem } = currentHost();
    if (!host) {
      fill(body, signIn(problem));
      return;
    }
    fill(
      body,
      h(
        "p",
        { class: "signed-in" },
        "Signed in as ",
        h("strong", { text: host }),
        ". ",
        h("button", {
          type: "button",
          class: "link",
          text: "Sign out",
          onclick: () => {
            hostToken.clear();
            render();
          },
        }),
      ),
      quizForm(token, alert),
      myQuizzes(host, alert),
    );
  }

  function signIn(problem) {
    const input = h("input", {
      id: "host-token",
      type: "password",
      autocomplete: "off",
      spellcheck: "false",
      required: true,
      "aria-describedby": "host-token-help",
    });
    return h(
      "form",
      {
        class: "card stack",
        "aria-labelledby": "sign-in-title",
        onsubmit: (e) => {
          e.preventDefault();
          const token = input.value.trim();
          const why = tokenProblem(token);
          if (why) {
            alert.show(why);
            input.focus();
            return;
          }
          hostToken.set(token);
          alert.clear();
          render();
          focusHeading(root);
        },
      },
      h("h2", { id: "sign-in-title", text: "Sign in" }),
      problem && h("p", { class: "notice", text: `The saved token cannot be used: ${problem}` }),
      h("label", { for: "host-token", text: "Host token" }),
      input,
      h(
        "p",
        { id: "host-token-help", class: "hint" },
        "Create one with ",
        h("code", { text: ".venv/bin/quizctl token --role host --subject YOUR_NAME" }),
        ". It stays in this browser.",
      ),
      h("button", { type: "submit", class: "primary", text: "Sign in" }),
    );
  }

  render();
  return () => {};
}

// --- The quiz form ---------------------------------------------------------------

const blankQuestion = () => ({ text: "", choices: ["", ""], correct: 0, seconds: 20, points: 1000 });

function quizForm(token, alert) {
  const quiz = { title: "", questions: [blankQuestion()] };
  const title = h("input", {
    id: "quiz-title",
    required: true,
    maxlength: 200,
    oninput: (e) => (quiz.title = e.target.value),
  });
  const list = h("div", { class: "stack" });
  const addQuestion = h("button", {
    type: "button",
    text: "Add question",
    onclick: () => {
      quiz.questions.push(blankQuestion());
      renderQuestions();
      list.lastElementChild.querySelector("input").focus();
    },
  });

  function renderQuestions() {
    fill(
      list,
      quiz.questions.map((q, i) => questionFields(q, i)),
    );
    addQuestion.disabled = quiz.questions.length >= 100;
  }

  function questionFields(q, qi) {
    const id = (name) => `q${qi}-${name}`;
    const choices = h("ol", { class: "choice-fields", type: "A" });
    const renderChoices = () =>
      fill(
        choices,
        q.choices.map((choice, ci) =>
          h(
            "li",
            { class: "choice-field" },
            h("input", {
              type: "radio",
              name: id("correct"),
              id: id(`correct-${ci}`),
              checked: q.correct === ci,
              onchange: () => (q.correct = ci),
            }),
            h("label", { for: id(`correct-${ci}`), class: "radio-label", text: `${LETTERS[ci]} is correct` }),
            h("label", { for: id(`choice-${ci}`), class: "visually-hidden", text: `Choice ${LETTERS[ci]}` }),
            h("input", {
              id: id(`choice-${ci}`),
              value: choice,
              required: true,
              maxlength: 200,
              placeholder: `Choice ${LETTERS[ci]}`,
              oninput: (e) => (q.choices[ci] = e.target.value),
            }),
            h("button", {
              type: "button",
              class: "icon",
              "aria-label": `Remove choice ${LETTERS[ci]}`,
              disabled: q.choices.length <= 2,
              text: "✕",
              onclick: () => {
                q.choices.splice(ci, 1);
                if (q.correct >= q.choices.length || q.correct === ci) q.correct = 0;
                else if (q.correct > ci) q.correct -= 1;
                renderChoices();
                choices.querySelector("input:not([type=radio])").focus();
              },
            }),
          ),
        ),
        h(
          "li",
          { class: "choice-add" },
          h("button", {
            type: "button",
            text: "Add choice",
            disabled: q.choices.length >= 6,
            onclick: () => {
              q.choices.push("");
              renderChoices();
              choices.querySelectorAll("input:not([type=radio])")[q.choices.length - 1].focus();
            },
          }),
        ),
      );
    renderChoices();
    return h(
      "fieldset",
      { class: "card question-fields" },
      h("legend", { text: `Question ${qi + 1}` }),
      h("label", { for: id("text"), text: "Question" }),
      h("input", {
        id: id("text"),
        value: q.text,
        required: true,
        maxlength: 500,
        oninput: (e) => (q.text = e.target.value),
      }),
      h("p", { class: "field-title", text: "Choices (pick the correct one)" }),
      choices,
      h(
        "div",
        { class: "row" },
        h(
          "div",
          { class: "field" },
          h("label", { for: id("seconds"), text: "Seconds to answer" }),
          h("input", {
            id: id("seconds"),
            type: "number",
            min: 1,
            max: 600,
            step: 1,
            value: q.seconds,
            required: true,
            oninput: (e) => (q.seconds = e.target.valueAsNumber),
          }),
        ),
        h(
          "div",
          { class: "field" },
          h("label", { for: id("points"), text: "Points" }),
          h("input", {
            id: id("points"),
            type: "number",
            min: 0,
            max: 10000,
            step: 1,
            value: q.points,
            required: true,
            oninput: (e) => (q.points = e.target.valueAsNumber),
          }),
        ),
      ),
      h("button", {
        type: "button",
        class: "link danger",
        disabled: quiz.questions.length <= 1,
        text: `Remove question ${qi + 1}`,
        onclick: () => {
          quiz.questions.splice(qi, 1);
          renderQuestions();
          addQuestion.focus();
        },
      }),
    );
  }

  // Paste YAML or JSON (the quizctl file format) to fill the form.
  const pasted = h("textarea", { id: "quiz-text", rows: 10, spellcheck: "false" });
  const paste = h(
    "details",
    { class: "card" },
    h("summary", { text: "Paste YAML or JSON instead" }),
    h(
      "div",
      { class: "stack" },
      h("label", { for: "quiz-text", text: "Quiz as YAML or JSON (the format of quizctl create)" }),
      pasted,
      h("button", {
        type: "button",
        text: "Load into the form",
        onclick: () => {
          try {
            const request = parseQuizText(pasted.value);
            quiz.title = request.title;
            title.value = request.title;
            quiz.questions = request.questions.map((q) => ({
              text: q.text,
              choices: [...q.choices],
              correct: q.correct_choice,
              seconds: (q.time_limit_ms ?? 20000) / 1000,
              points: q.points ?? 1000,
            }));
            renderQuestions();
            alert.clear();
            paste.open = false;
            title.focus();
          } catch (error) {
            showProblems(
              alert,
              error instanceof QuizFileError ? error.problems : [error.message],
              "The quiz has mistakes:",
            );
          }
        },
      }),
    ),
  );

  const submit = h("button", { type: "submit", class: "primary", text: "Create quiz" });
  const form = h(
    "form",
    {
      class: "stack",
      "aria-labelledby": "create-title",
      novalidate: true,
      onsubmit: async (e) => {
        e.preventDefault();
        const problems = check(quiz);
        if (problems.length) {
          showProblems(alert, problems, "Please fix:");
          return;
        }
        submit.disabled = true;
        submit.textContent = "Creating…";
        try {
          const { quiz: created } = await api.createQuiz(token, request(quiz));
          location.hash = `#/host/${created.quiz_id}`;
        } catch (error) {
          alert.show(error, "Could not create the quiz.");
          submit.disabled = false;
          submit.textContent = "Create quiz";
        }
      },
    },
    h("h2", { id: "create-title", text: "New quiz" }),
    paste,
    h("div", { class: "card stack" }, h("label", { for: "quiz-title", text: "Title" }), title),
    list,
    h("div", { class: "row" }, addQuestion, submit),
  );
  renderQuestions();
  return form;
}

function check(quiz) {
  const problems = [];
  if (!quiz.title.trim()) problems.push("Give the quiz a title.");
  quiz.questions.forEach((q, i) => {
    const n = `Question ${i + 1}`;
    if (!q.text.trim()) problems.push(`${n}: write the question.`);
    const choices = q.choices.map((c) => c.trim());
    if (choices.some((c) => !c)) problems.push(`${n}: fill in every choice or remove the empty ones.`);
    if (new Set(choices).size !== choices.length) problems.push(`${n}: the choices must all differ.`);
    if (!(q.seconds >= 1 && q.seconds <= 600)) problems.push(`${n}: seconds to answer must be 1–600.`);
    if (!(Number.isInteger(q.points) && q.points >= 0 && q.points <= 10000))
      problems.push(`${n}: points must be a whole number 0–10000.`);
  });
  return problems;
}

function request(quiz) {
  return {
    title: quiz.title.trim(),
    questions: quiz.questions.map((q) => ({
      text: q.text.trim(),
      choices: q.choices.map((c) => c.trim()),
      correct_choice: q.correct,
      points: q.points,
      time_limit_ms: Math.round(q.seconds * 1000),
    })),
  };
}

function showProblems(alert, problems, heading) {
  alert.show(heading);
  alert.el.append(
    h(
      "ul",
      {},
      problems.map((p) => h("li", { text: p })),
    ),
  );
}

// --- Quizzes created earlier -------------------------------------------------------

function myQuizzes(host, alert) {
  const list = h("ul", { class: "quiz-list" }, h("li", { text: "Loading…" }));
  const section = h(
    "section",
    { class: "card stack", "aria-labelledby": "mine-title" },
    h("h2", { id: "mine-title", text: "Your recent quizzes" }),
    list,
  );
  api
    .listQuizzes(100)
    .then(({ quizzes = [] }) => {
      const mine = quizzes.filter((q) => q.host === host);
      fill(
        list,
        mine.length
          ? mine.map((q) =>
              h(
                "li",
                {},
                h("a", { href: `#/host/${q.quiz_id}`, text: q.title }),
                ` · ${q.quiz_id} · ${STATE_NAMES[q.state] ?? q.state} · ${q.player_count} players`,
              ),
            )
          : h("li", { text: "None yet." }),
      );
    })
    .catch((error) => {
      fill(list);
      alert.show(error, "Could not list quizzes.");
    });
  return section;
}
