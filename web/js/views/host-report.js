// One game's report on the host desk: the questions hardest first, each with how
// everyone answered; the players best first; and the report to take away as CSV
// (the server's own file) or JSON (GetQuizReport's reply).

import { api } from "../api.js";
import { distribution } from "../distribution.js";
import { errorBox, fill, formatNumber, h } from "../dom.js";
import { asHost, SignedOut } from "../host-session.js";

/** `quiz`: a ListQuizzes entry. signedOut(): the session has ended; onClose(): the
 * host is done with the report. */
export function quizReport(quiz, { signedOut, onClose }) {
  const alert = errorBox();
  const body = h("div", { class: "stack" }, h("p", { text: "Loading the report…" }));
  const el = h(
    "section",
    { class: "card stack report", "aria-labelledby": "report-title" },
    h("h3", { id: "report-title", text: `Report: ${quiz.title}` }),
    h(
      "div",
      { class: "row" },
      h("button", { type: "button", text: "Download CSV", onclick: () => download("csv") }),
      h("button", { type: "button", text: "Download JSON", onclick: () => download("json") }),
      h("button", { type: "button", class: "link", text: "Close report", onclick: onClose }),
    ),
    alert.el,
    body,
  );

  async function asking(failed, call) {
    alert.clear();
    try {
      return await asHost(call);
    } catch (error) {
      if (error instanceof SignedOut) signedOut();
      else alert.show(error, failed);
      return null;
    }
  }

  // Fetched again on each download: a running game's report grows meanwhile.
  async function download(format) {
    const file =
      format === "csv"
        ? await asking("Could not download the CSV.", (token) => api.getQuizReportCsv(token, quiz.quiz_id))
        : await asking("Could not download the JSON.", async (token) => {
            const reply = await api.getQuizReport(token, quiz.quiz_id);
            return new Blob([JSON.stringify(reply, null, 2)], { type: "application/json" });
          });
    if (file) save(file, `${fileName(quiz.title)}-report.${format}`);
  }

  asking("Could not load the report.", (token) => api.getQuizReport(token, quiz.quiz_id)).then((reply) => {
    if (reply) fill(body, reportBody(reply.report));
    else fill(body);
  });
  return el;
}

const STATUS = {
  final: "The game is over: this is its final record.",
  // Closed, but the system of record has not got the game yet.
  closed: "The game is over: results as played (the final record is still being written).",
  running: "The game is still going: results so far.",
};

function reportBody({ quiz, players = [], questions = [], is_final: final }) {
  const status = final ? "final" : quiz?.state === "QUIZ_STATE_CLOSED" ? "closed" : "running";
  return [
    h("p", {
      class: "hint",
      "data-testid": "report-status",
      text: STATUS[status],
    }),
    h("h4", { text: "Questions, hardest first" }),
    questions.length
      ? h("ol", { class: "quiz-list", "data-testid": "report-questions" }, questions.map(questionReport))
      : h("p", { text: "No question has opened yet." }),
    h("h4", { text: "Players, best first" }),
    players.length ? playerTable(players, questions.length) : h("p", { text: "Nobody played." }),
  ];
}

function questionReport(q) {
  const answered = q.answered ?? 0;
  const right = q.answered_right ?? 0;
  const share = answered ? Math.round((right / answered) * 100) : 0;
  const median = q.median_time_ms !== undefined ? ` · median ${(q.median_time_ms / 1000).toFixed(1)} s` : "";
  return h(
    "li",
    { class: "report-question" },
    h("strong", { text: `Question ${(q.index ?? 0) + 1}: ${q.text}` }),
    h("p", {
      class: "hint",
      "data-testid": "right-share",
      text: `${formatNumber(right)} of ${formatNumber(answered)} right (${share}%)${median}`,
    }),
    distribution(q.choices, q.choice_counts ?? [], q.correct_choice ?? 0),
  );
}

function playerTable(players, questionCount) {
  const th = (text, number = false) => h("th", { scope: "col", class: number ? "number" : null, text });
  const td = (text) => h("td", { class: "number", text });
  return h(
    "table",
    { "data-testid": "report-players" },
    h("thead", {}, h("tr", {}, th("Rank", true), th("Player"), th("Score", true), th("Right", true))),
    h(
      "tbody",
      {},
      players.map((p) =>
        h(
          "tr",
          {},
          td(p.rank),
          h("td", { text: p.nickname }),
          td(formatNumber(p.score)),
          td(`${(p.answers ?? []).filter((a) => a.correct).length} of ${questionCount}`),
        ),
      ),
    ),
  );
}

/** A title as a file name: no path separators or characters Windows refuses. */
const fileName = (title) => title.replace(/[\\/:*?"<>|]+/g, "-").trim() || "quiz";

function save(blob, name) {
  const link = h("a", { href: URL.createObjectURL(blob), download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  // After the click has started the download: revoking at once can cancel it.
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
