// The way in to the host's desk: sign in, or create an account (with an invite code
// where the operator made sign-up invite-only); for development and automation, a
// token made by quizctl. The server's refusals are shown in the form, a bad field's
// beside that field.

import { ApiError } from "../api.js";
import { errorBox, fill, h, sentence } from "../dom.js";
import { LIMITS } from "../generated/contract.js";
import { signIn, signUp, useToken, whySignedOut } from "../host-session.js";

const SIGN_UP = LIMITS.SignUpRequest;
const SIGN_IN = LIMITS.SignInRequest;

/** The sign-in forms; `onSignedIn()` once the host is in. */
export function signInPanel(onSignedIn) {
  const panel = h("div", { class: "stack" });

  function show(form) {
    fill(panel, form, tokenForm(onSignedIn));
  }

  /** Switches between the two forms, keeping the email typed so far. */
  function switchTo(makeForm, from) {
    const email = from.querySelector("input[type=email]").value;
    const form = makeForm();
    form.querySelector("input[type=email]").value = email;
    show(form);
    form.querySelector("input").focus();
  }

  function signInForm() {
    const email = field("email", "Email", {
      type: "email",
      autocomplete: "email",
      maxlength: SIGN_IN.email.max_len,
    });
    const password = field("password", "Password", {
      type: "password",
      autocomplete: "current-password",
      maxlength: SIGN_IN.password.max_len,
    });
    const form = accountForm({
      id: "sign-in-title",
      title: "Sign in",
      submit: ["Sign in", "Signing in…"],
      fields: [email, password],
      send: (values) => signIn(values.email, values.password),
      onSignedIn,
      notice: whySignedOut(),
      footer: h(
        "p",
        {},
        "New here? ",
        h("button", {
          type: "button",
          class: "link",
          text: "Create an account",
          onclick: () => switchTo(signUpForm, form),
        }),
      ),
    });
    return form;
  }

  function signUpForm() {
    const name = field(
      "display_name",
      "Display name",
      { autocomplete: "nickname", maxlength: SIGN_UP.display_name.max_len },
      "Players and reports show it.",
    );
    const email = field("email", "Email", {
      type: "email",
      autocomplete: "email",
      maxlength: SIGN_UP.email.max_len,
    });
    const password = field(
      "password",
      "Password",
      {
        type: "password",
        autocomplete: "new-password",
        minlength: SIGN_UP.password.min_len,
        maxlength: SIGN_UP.password.max_len,
      },
      `${SIGN_UP.password.min_len} to ${SIGN_UP.password.max_len} characters.`,
    );
    const invite = field(
      "invite_code",
      "Invite code",
      { autocomplete: "off", spellcheck: "false", maxlength: SIGN_UP.invite_code.max_len },
      "Only needed where the operator made sign-up invite-only.",
    );
    const form = accountForm({
      id: "sign-up-title",
      title: "Create an account",
      submit: ["Create account", "Creating your account…"],
      fields: [name, email, password, invite],
      layout: [
        name.el,
        email.el,
        password.el,
        h("details", {}, h("summary", { text: "Have an invite code?" }), invite.el),
      ],
      send: signUp,
      onSignedIn,
      footer: h(
        "p",
        {},
        "Already have an account? ",
        h("button", {
          type: "button",
          class: "link",
          text: "Sign in instead",
          onclick: () => switchTo(signInForm, form),
        }),
      ),
    });
    return form;
  }

  show(signInForm());
  return panel;
}

/** A labelled input with an optional hint, and room for what the server says of it.
 * `name` is the request's field, so a BadRequest violation finds its input. */
function field(name, label, attributes, hint = "") {
  const id = `account-${name}`;
  const error = h("p", { id: `${id}-error`, class: "field-error", hidden: true });
  const input = h("input", {
    id,
    name,
    ...attributes,
    "aria-describedby": hint ? `${id}-hint ${id}-error` : `${id}-error`,
  });
  return {
    name,
    label,
    input,
    el: h(
      "div",
      {},
      h("label", { for: id, text: label }),
      input,
      hint && h("p", { id: `${id}-hint`, class: "hint", text: hint }),
      error,
    ),
    say(text) {
      error.textContent = text;
      error.hidden = !text;
      if (!text) return input.removeAttribute("aria-invalid");
      input.setAttribute("aria-invalid", "true");
      const folded = input.closest("details"); // the invite code's
      if (folded) folded.open = true;
    },
  };
}

/** A form that sends its fields' values and shows what the server refused. */
function accountForm({ id, title, submit: [label, busy], fields, layout, send, onSignedIn, notice, footer }) {
  const alert = errorBox();
  const button = h("button", { type: "submit", class: "primary", text: label });
  return h(
    "form",
    {
      class: "card stack",
      "aria-labelledby": id,
      // The server checks the fields and names each bad one; its words are shown.
      novalidate: true,
      onsubmit: async (e) => {
        e.preventDefault();
        alert.clear();
        for (const f of fields) f.say("");
        button.disabled = true;
        button.textContent = busy;
        try {
          await send(Object.fromEntries(fields.map((f) => [f.name, f.input.value])));
        } catch (error) {
          button.disabled = false;
          button.textContent = label;
          const problems = fieldProblems(error, fields);
          for (const [f, text] of problems) f.say(text);
          if (problems.length) problems[0][0].input.focus();
          else alert.show(error);
          return;
        }
        onSignedIn();
      },
    },
    h("h2", { id, text: title }),
    notice && h("p", { class: "notice", text: notice }),
    alert.el,
    layout ?? fields.map((f) => f.el),
    button,
    footer,
  );
}

/** [[field, text]] for each refusal that is about one of `fields`. */
function fieldProblems(error, fields) {
  if (!(error instanceof ApiError)) return [];
  const named = (name) => fields.find((f) => f.name === name);
  if (error.reason === "EMAIL_TAKEN") return [[named("email"), sentence(error.message)]];
  return error.violations
    .filter((v) => named(v.field))
    .map((v) => [named(v.field), sentence(`${named(v.field).label} ${v.description}`)]);
}

/** The development way in: a host token pasted from `quizctl token`. */
function tokenForm(onSignedIn) {
  const alert = errorBox();
  const input = h("input", {
    id: "host-token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "host-token-help",
  });
  const form = h(
    "form",
    {
      class: "stack",
      "aria-label": "Use a token from quizctl",
      onsubmit: (e) => {
        e.preventDefault();
        const problem = useToken(input.value.trim());
        if (!problem) return onSignedIn();
        alert.show(problem);
        input.focus();
      },
    },
    alert.el,
    h("label", { for: "host-token", text: "Host token" }),
    input,
    h(
      "p",
      { id: "host-token-help", class: "hint" },
      "For development and automation. Create one with ",
      h("code", { text: ".venv/bin/quizctl token --role host --subject YOUR_NAME" }),
      ". It stays in this browser.",
    ),
    h("button", { type: "submit", text: "Use this token" }),
  );
  return h("details", { class: "card" }, h("summary", { text: "Use a token from quizctl" }), form);
}
