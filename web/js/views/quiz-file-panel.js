// Quiz files into the quiz form: pasted, or uploaded (as quizctl exports them, or
// as the library's Export downloads them), every mistake listed beside the box.

import { errorBox, h } from "../dom.js";
import { parseQuizText, QuizFileError } from "../quizfile.js";

/** Paste or upload a quiz file (the quizctl format): `load(request)` with what it says. */
export function quizFilePanel(load) {
  const pasted = h("textarea", { id: "quiz-text", rows: 10, spellcheck: "false" });
  const alert = errorBox();
  const read = (text) => {
    try {
      const request = parseQuizText(text);
      alert.clear();
      panel.open = false;
      load(request);
    } catch (error) {
      const problems = error instanceof QuizFileError ? error.problems : [error.message];
      alert.showList("The quiz has mistakes:", problems);
    }
  };
  const upload = h("input", {
    id: "quiz-file",
    type: "file",
    accept: ".yaml,.yml,.json,application/json,text/yaml,text/plain",
    onchange: async (e) => {
      const file = e.target.files[0];
      if (!file) return;
      pasted.value = await file.text();
      read(pasted.value);
    },
  });
  const panel = h(
    "details",
    { class: "card" },
    h("summary", { text: "Paste YAML or JSON instead, or upload a quiz file" }),
    h(
      "div",
      { class: "stack" },
      h("label", { for: "quiz-file", text: "Quiz file (.yaml or .json, as quizctl reads and exports)" }),
      upload,
      h("label", { for: "quiz-text", text: "Quiz as YAML or JSON (the format of quizctl create)" }),
      pasted,
      alert.el,
      h("button", { type: "button", text: "Load into the form", onclick: () => read(pasted.value) }),
    ),
  );
  return panel;
}
