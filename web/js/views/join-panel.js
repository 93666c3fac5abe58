// The host screen's "join at" panel: the link players open, its QR code for phones
// and the quiz code; where only this machine can open the link (the host opened
// localhost and no public URL is set), it says what to do instead of a QR code.
// While nobody can join (the lobby locked, the quiz started), it says so below them.

import { fill, h } from "../dom.js";
import { joinLink } from "../join-link.js";
import { qrImage } from "../qr.js";

/** {el: the panel, filled once the link is known, shut(why)}; `alert` (an
 * errorBox) shows problems. */
export function joinPanel(quizId, alert) {
  const note = h("p", { class: "share-note", role: "status", "data-testid": "join-note", hidden: true });
  const panel = h("div", { class: "share" }, note);
  joinLink(quizId).then(({ url, forPhones }) => {
    const copy = h("button", {
      type: "button",
      class: "small",
      text: "Copy link",
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(url);
          copy.textContent = "Copied";
        } catch {
          alert.show("Copying is not allowed here; select the link and copy it.");
        }
      },
    });
    fill(
      panel,
      h("p", { class: "share-label", text: "Join at" }),
      h("a", {
        class: "share-url",
        href: url,
        "data-testid": "join-link",
        target: "_blank",
        rel: "noopener",
        text: url,
      }),
      h("p", { class: "share-label", text: "with code" }),
      h("p", { class: "share-code", "data-testid": "quiz-code", text: quizId }),
      copy,
      forPhones
        ? qrImage(url, `QR code of the join link ${url}`)
        : h(
            "p",
            { class: "share-hint", role: "note", "data-testid": "join-hint" },
            h("strong", { text: "Phones cannot open this link: " }),
            "it points to this computer. Open this screen at the address for players' phones that ",
            h("code", { text: "make run" }),
            " printed (or set ",
            h("code", { text: "QUIZMESH_PUBLIC_URL" }),
            "): the link and its QR code then use it.",
          ),
      note, // last: below the code and QR code, across the panel
    );
  });
  return {
    el: panel,
    /** Says why nobody can join now ("Lobby locked…"), or that they can (null). */
    shut(why) {
      note.textContent = why ?? "";
      note.hidden = !why;
      panel.classList.toggle("is-shut", Boolean(why));
    },
  };
}
