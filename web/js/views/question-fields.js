// One question of the quiz form: its text, its choices (one marked correct), its
// time and points. Edits go straight into the draft's question.

import { fill, h } from "../dom.js";
import { LIMITS } from "../generated/contract.js";
import { SECONDS } from "../quiz-draft.js";

const QUESTION = LIMITS.QuestionSpec;
const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ".slice(0, QUESTION.choices.max_items);

/** The fieldset of question `q`, number `qi` (0-based) of `count`; `remove()` takes
 * it out of the quiz. */
export function questionFields(q, qi, { count, remove }) {
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
            maxlength: QUESTION.choices.items.max_len,
            placeholder: `Choice ${LETTERS[ci]}`,
            oninput: (e) => (q.choices[ci] = e.target.value),
          }),
          h("button", {
            type: "button",
            class: "icon",
            "aria-label": `Remove choice ${LETTERS[ci]}`,
            disabled: q.choices.length <= QUESTION.choices.min_items,
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
          disabled: q.choices.length >= QUESTION.choices.max_items,
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
      maxlength: QUESTION.text.max_len,
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
          min: SECONDS.min,
          max: SECONDS.max,
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
          min: QUESTION.points.gte,
          max: QUESTION.points.lte,
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
      disabled: count <= 1,
      text: `Remove question ${qi + 1}`,
      onclick: remove,
    }),
  );
}
