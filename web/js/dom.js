// A few DOM helpers instead of a framework. Text always goes in as text nodes, never
// as HTML, so nicknames and question texts cannot inject markup.

/**
 * h("button", {class: "primary", onclick: fn, "aria-label": "…"}, "child", node, [more])
 * Attributes: `class`, `text`, `on<event>` handlers, booleans (true sets, false omits),
 * anything else as an attribute.
 */
export function h(tag, attributes = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "text") {
      el.textContent = value;
    } else if (name === "value") {
      el.value = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Text for screen readers only. */
export const srOnly = (text) => h("span", { class: "visually-hidden", text });

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Says `text` to screen readers through the page's polite live region. */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  // Clearing first makes a repeated message be read again.
  region.textContent = "";
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

/** Moves focus to a screen's heading so keyboard and screen reader users start there. */
export function focusHeading(root) {
  const heading = root.querySelector("h1, h2");
  if (!heading) return;
  heading.setAttribute("tabindex", "-1");
  heading.focus({ preventScroll: false });
}

/** The alert box every view has: an API error's message, or nothing. */
export function errorBox() {
  const box = h("div", { class: "alert", role: "alert", hidden: true });
  return {
    el: box,
    show(error, prefix = "") {
      const message = typeof error === "string" ? error : error?.message || String(error);
      fill(box, prefix ? h("strong", { text: `${prefix} ` }) : null, sentence(message));
      box.hidden = false;
    },
    /** A heading and the list of things to fix ("Please fix:" and each problem). */
    showList(heading, items) {
      fill(
        box,
        h("strong", { text: heading }),
        h(
          "ul",
          {},
          items.map((item) => h("li", { text: item })),
        ),
      );
      box.hidden = false;
    },
    clear() {
      box.hidden = true;
      box.replaceChildren();
    },
  };
}

/** "quiz X not found" -> "Quiz X not found." */
export function sentence(text) {
  const t = String(text).trim();
  if (!t) return t;
  const capital = t[0].toUpperCase() + t.slice(1);
  return /[.!?…:]$/.test(capital) ? capital : `${capital}.`;
}

export const formatNumber = (n) => new Intl.NumberFormat().format(n ?? 0);

/** 1 -> "1st", 2 -> "2nd", 11 -> "11th". */
export function ordinal(n) {
  const rule = new Intl.PluralRules("en", { type: "ordinal" }).select(n);
  return `${n}${{ one: "st", two: "nd", few: "rd", other: "th" }[rule]}`;
}

/** Shown on the page's status line (top right): the live streams' state. */
export function connectionStatus(text) {
  const el = document.getElementById("connection");
  if (el) el.textContent = text;
}
