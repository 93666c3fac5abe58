// The host's live quiz: share the code, start, advance, close, and a big-screen
// stage (question, countdown, answers received, animated leaderboard, podium)
// made to be projected.

import { api, ApiError, Code, millis, watchQuiz } from "../api.js";
import { Leaderboard, podium } from "../board.js";
import { countdown, ServerClock, timed } from "../clock.js";
import { announce, connectionStatus, errorBox, fill, focusHeading, formatNumber, h } from "../dom.js";
import { distribution } from "../distribution.js";
import { asHost, signedInHost, SignedOut } from "../host-session.js";
import { joinPanel } from "./join-panel.js";

const SHAPES = ["▲", "◆", "●", "■", "★", "✚"];
const STATES = { QUIZ_STATE_OPEN: "OPEN", QUIZ_STATE_RUNNING: "RUNNING", QUIZ_STATE_CLOSED: "CLOSED" };

export function mountHostLive(root, { quizId }) {
  let hosting = Boolean(signedInHost()); // false: the public view, with a link to sign in
  const alert = errorBox();
  const clock = new ServerClock();
  const game = {
    title: "",
    state: null,
    count: 0,
    question: null, // current QuestionView
    reveals: new Map(),
    counts: new Map(), // question index -> choice_counts, from its QuestionClosed
    snapshot: null,
    players: 0,
    allowLateJoin: false,
    lobbyLocked: false,
  };
  let stream = null;
  let timer = null;
  let unmounted = false; // replies that arrive after the host left change nothing
  let shown = "";
  let restoreFocus = false;
  let controlsKey = "";

  const controls = h("div", { class: "controls", role: "group", "aria-label": "Quiz controls" });
  const status = h("p", { class: "host-status", role: "status", "data-testid": "host-status" });
  const stage = h("section", { class: "stage", "aria-labelledby": "stage-title" });
  const board = new Leaderboard({ label: "Leaderboard", large: true });
  const boardCount = h("p", { class: "board-count" });
  const side = h(
    "section",
    { class: "board-panel", "aria-labelledby": "board-title" },
    h("h2", { id: "board-title", text: "Leaderboard" }),
    boardCount,
    board.el,
  );
  const share = joinPanel(quizId, alert);
  fill(
    root,
    h(
      "div",
      { class: "host-live" },
      h("div", { class: "host-head" }, h("h1", { class: "host-title", id: "host-title" }), status, controls),
      alert.el,
      h("div", { class: "host-body" }, h("div", { class: "host-main" }, stage, share.el), side),
    ),
  );

  // --- Actions ---------------------------------------------------------------

  /** The session has ended: say why; the controls become a link to sign in. */
  function signedOut(error) {
    hosting = false;
    alert.show(error.message);
  }

  async function act(label, call) {
    alert.clear();
    restoreFocus = controls.contains(document.activeElement);
    for (const button of controls.querySelectorAll("button")) button.disabled = true;
    try {
      const { quiz } = await asHost((token) => timed(clock, () => call(token, quizId)));
      applyQuiz(quiz);
    } catch (error) {
      const prefix = error.code === Code.PERMISSION_DENIED ? "Not your quiz." : `Could not ${label}.`;
      if (error instanceof SignedOut) signedOut(error);
      else alert.show(error, prefix);
    } finally {
      controlsKey = ""; // the buttons were disabled: rebuild them
      render();
    }
  }

  function button(text, onclick, kind = "") {
    return h("button", { type: "button", class: kind, text, onclick });
  }

  /** Ending a quiz cannot be undone: the first press only asks to press again. */
  function endButton() {
    let armed = null;
    const end = button(
      "End quiz now",
      () => {
        if (armed) {
          clearTimeout(armed);
          act("close the quiz", api.closeQuiz);
          return;
        }
        end.textContent = "Press again to end the quiz";
        armed = setTimeout(() => {
          armed = null;
          end.textContent = "End quiz now";
        }, 4000);
      },
      "danger",
    );
    return end;
  }

  function renderControls() {
    const last = game.question && game.question.index + 1 >= game.count;
    // An open question is ended (and revealed on every screen) before the host moves
    // on: the same AdvanceQuestion, which the server ends the question with.
    const revealed = Boolean(game.question) && game.reveals.has(game.question.index);
    // Rebuilt only when they change: events arrive all the time, and rebuilding
    // would take the keyboard focus away from the button the host is on.
    const key = `${game.state}:${last}:${revealed}:${hosting}:${game.lobbyLocked}`;
    if (key === controlsKey) return;
    controlsKey = key;
    const buttons = [];
    if (!hosting) {
      buttons.push(h("a", { class: "button", href: "#/host", text: "Sign in to run this quiz" }));
    } else if (game.state === "OPEN") {
      buttons.push(button("Start quiz", () => act("start the quiz", api.startQuiz), "primary"));
    } else if (game.state === "RUNNING") {
      const [label, doing] = !revealed
        ? ["Reveal answer", "end the question"]
        : last
          ? ["Finish quiz", "finish the quiz"]
          : ["Next question", "advance"];
      buttons.push(
        button(label, () => act(doing, api.advanceQuestion), "primary"),
        endButton(),
      );
    } else if (game.state === "CLOSED") {
      buttons.push(h("a", { class: "button", href: "#/host", text: "New quiz" }));
    }
    if (hosting && joinable()) buttons.push(lobbyButton());
    fill(controls, buttons);
    // Keep the keyboard where it was: the host presses Next again and again.
    if (restoreFocus) controls.querySelector(".primary, button, a")?.focus();
    restoreFocus = false;
  }

  function lobbyButton() {
    const lock = !game.lobbyLocked;
    return button(lock ? "Lock lobby" : "Unlock lobby", () =>
      act(lock ? "lock the lobby" : "unlock the lobby", (token, id) => api.setLobby(token, id, lock)),
    );
  }

  // --- State ------------------------------------------------------------------

  /** Whether the quiz lets players join now, the lobby aside. */
  const joinable = () => game.state === "OPEN" || (game.state === "RUNNING" && game.allowLateJoin);

  function applyQuiz(quiz) {
    game.title = quiz.title;
    game.allowLateJoin = Boolean(quiz.allow_late_join);
    game.lobbyLocked = Boolean(quiz.lobby_locked);
    game.state = STATES[quiz.state] ?? null;
    game.count = quiz.question_count;
    game.players = Math.max(game.players, quiz.player_count ?? 0);
    for (const q of quiz.questions ?? []) {
      const closed = game.state === "CLOSED" || q.index < quiz.current_question;
      if (closed && q.correct_choice !== undefined) game.reveals.set(q.index, q.correct_choice);
    }
    const current = (quiz.questions ?? []).find((q) => q.index === quiz.current_question);
    if (current && (!game.question || current.index >= game.question.index)) {
      game.question = current;
      if (millis(current.deadline) <= clock.now() && current.correct_choice !== undefined)
        game.reveals.set(current.index, current.correct_choice);
    }
  }

  function onEvent(event) {
    if (event.quiz_started) {
      game.state = "RUNNING";
      game.count = event.quiz_started.question_count;
    } else if (event.question_opened) {
      const { question, question_count: count } = event.question_opened;
      game.count = count;
      if (game.state !== "CLOSED" && (!game.question || question.index > game.question.index)) {
        game.state = "RUNNING";
        game.question = question;
      }
    } else if (event.question_closed) {
      const { index, correct_choice: correct, choice_counts: counts } = event.question_closed;
      game.reveals.set(index, correct ?? 0);
      if (counts) game.counts.set(index, counts);
    } else if (event.quiz_closed) {
      game.state = "CLOSED";
    } else if (event.leaderboard_changed) {
      const snapshot = event.leaderboard_changed;
      const old = game.snapshot;
      if (old && Number(snapshot.version) < Number(old.version) && !snapshot.is_final) return;
      game.snapshot = snapshot;
      game.players = snapshot.total_players;
    }
    render();
  }

  // --- Rendering ----------------------------------------------------------------

  const screenKey = () => {
    const q = game.question;
    if (game.state === "RUNNING" && q) return `q${q.index}:${game.reveals.has(q.index) ? "closed" : "open"}`;
    return game.state ?? "loading";
  };

  function render() {
    if (unmounted) return;
    document.getElementById("host-title").textContent = game.title || `Quiz ${quizId}`;
    status.textContent = statusText();
    renderControls();
    share.shut(whyShut());
    const key = screenKey();
    if (key !== shown) {
      shown = key;
      timer?.stop();
      timer = null;
      fill(stage, stageContent());
      if (game.state === "CLOSED") announce("The quiz is over. Final results.");
    }
    updateAnswers();
    board.update(game.snapshot?.entries ?? []);
    boardCount.textContent = `${formatNumber(game.players)} ${game.players === 1 ? "player" : "players"}`;
    document.querySelector(".host-live")?.classList.toggle("is-closed", game.state === "CLOSED");
  }

  /** Why nobody can join now, or null when they can. */
  function whyShut() {
    if (game.state === "RUNNING" && !game.allowLateJoin) return "Joining closed: the quiz has started";
    if (game.lobbyLocked && joinable()) return "Lobby locked: nobody can join now";
    return null;
  }

  function statusText() {
    if (game.state === "OPEN")
      return `${game.lobbyLocked ? "Lobby locked" : "Open for joining"} · ${game.players} joined`;
    if (game.state === "RUNNING" && game.question)
      return `Question ${game.question.index + 1} of ${game.count}`;
    if (game.state === "CLOSED") return "Finished";
    return "";
  }

  function stageContent() {
    const q = game.question;
    if (game.state === "OPEN") {
      return [
        h("h2", { id: "stage-title", class: "stage-title", text: "Waiting for players" }),
        h("p", { class: "stage-lead", "data-testid": "lobby-count" }),
        h("ul", { class: "chips big", "aria-label": "Players", "data-testid": "lobby-players" }),
      ];
    }
    if (game.state === "CLOSED") {
      return [
        h("h2", { id: "stage-title", class: "stage-title", text: "Final results" }),
        h("div", { class: "podium-slot" }),
      ];
    }
    if (!q) return [h("h2", { id: "stage-title", class: "stage-title", text: "Loading…" })];
    const correct = game.reveals.get(q.index);
    const closed = correct !== undefined;
    if (!closed) {
      timer = countdown({ deadline: millis(q.deadline), limitMs: q.time_limit_ms, clock, large: true });
    }
    return [
      h("p", { class: "eyebrow", text: `Question ${q.index + 1} of ${game.count}` }),
      h("h2", { id: "stage-title", class: "stage-question", text: q.text }),
      h(
        "div",
        { class: "stage-meta" },
        timer?.el ?? h("p", { class: "stage-closed", text: "Time's up" }),
        h("p", { class: "answers-count", "data-testid": "answers-count", role: "status" }),
      ),
      h(
        "ul",
        { class: `choices big choices-${q.choices.length}`, "aria-label": "Choices" },
        q.choices.map((text, i) =>
          h(
            "li",
            { class: `choice choice-${i}${closed ? (i === correct ? " correct" : " wrong") : ""}` },
            h("span", { class: "choice-key", "aria-hidden": "true", text: SHAPES[i] }),
            h("span", { class: "choice-text", text }),
            closed && i === correct ? h("span", { class: "choice-mark", text: " ✓ correct" }) : null,
          ),
        ),
      ),
      // Filled in place: the reveal may show (the host's own reply) before its event.
      closed && h("div", { class: "distribution-slot" }),
    ];
  }

  function updateAnswers() {
    const counter = stage.querySelector("[data-testid=answers-count]");
    if (counter && game.question) {
      const snap = game.snapshot;
      const answers = snap && snap.question_index === game.question.index ? snap.question_answers : 0;
      fill(
        counter,
        h("strong", { text: formatNumber(answers) }),
        ` of ${formatNumber(game.players)} answered`,
      );
      counter.dataset.value = answers;
    }
    const lobby = stage.querySelector("[data-testid=lobby-players]");
    if (lobby) {
      const names = (game.snapshot?.entries ?? []).map((e) => e.nickname);
      stage.querySelector("[data-testid=lobby-count]").textContent =
        `${game.players} ${game.players === 1 ? "player has" : "players have"} joined`;
      fill(
        lobby,
        names.map((n) => h("li", { class: "chip", text: n })),
        game.players > names.length &&
          h("li", { class: "chip", text: `+${game.players - names.length} more` }),
      );
    }
    const bars = stage.querySelector(".distribution-slot");
    const q = game.question;
    if (bars && !bars.firstChild && game.counts.has(q.index))
      fill(bars, distribution(q.choices, game.counts.get(q.index), game.reveals.get(q.index), { large: true }));
    const slot = stage.querySelector(".podium-slot");
    if (slot) fill(slot, podium(game.snapshot?.entries ?? []));
  }

  // --- Start --------------------------------------------------------------------

  /** The quiz as its host sees it, or as anyone does once the session has ended. */
  async function getQuiz() {
    if (hosting) {
      try {
        return await asHost((token) => timed(clock, () => api.getQuiz(quizId, token)));
      } catch (error) {
        if (!(error instanceof SignedOut)) throw error;
        signedOut(error);
      }
    }
    return timed(clock, () => api.getQuiz(quizId));
  }

  (async () => {
    try {
      const { quiz } = await getQuiz();
      applyQuiz(quiz);
    } catch (error) {
      fill(stage, h("h2", { id: "stage-title", text: "This quiz is not available" }));
      alert.show(
        error,
        error instanceof ApiError && error.code === Code.UNAUTHENTICATED ? "Sign in again." : "",
      );
      return;
    }
    if (unmounted) return;
    render();
    focusHeading(root);
    // Anyone may watch a quiz's events; the host's view needs no token for it.
    stream = watchQuiz(quizId, {
      afterSequence: 0,
      onEvent,
      onState: (state) =>
        connectionStatus(
          { live: "", offline: "Offline: waiting for the network…" }[state] ?? "Reconnecting…",
        ),
      onFatal: (error) => {
        connectionStatus("Disconnected");
        alert.show(error);
      },
    });
  })();

  return () => {
    unmounted = true;
    stream?.stop();
    timer?.stop();
    connectionStatus("");
  };
}
