// The player's screens: join -> lobby -> question -> result -> ... -> final place.
// The phone is the primary target; everything works with a keyboard alone.
// Unless the quiz has instant feedback, an answer is only "received" while its
// question is open: right or wrong and points come when the question closes.

import { ApiError, Code, millis } from "../api.js";
import { LIMITS } from "../generated/contract.js";
import { Leaderboard, neighbours, podium } from "../board.js";
import { countdown } from "../clock.js";
import {
  announce,
  connectionStatus,
  errorBox,
  fill,
  focusHeading,
  formatNumber,
  h,
  ordinal,
  sentence,
  srOnly,
} from "../dom.js";
import { distribution } from "../distribution.js";
import { PlayerGame } from "../player-game.js";

const SHAPES = ["▲", "◆", "●", "■", "★", "✚"];
const LETTERS = "ABCDEF";

export function mountPlayer(root, { quizId }) {
  const alert = errorBox();
  const bar = h("div", { class: "player-bar" });
  const screen = h("div", { class: "screen" });
  const standings = h("section", { class: "standings", "aria-labelledby": "standings-title", hidden: true });
  fill(root, h("div", { class: "player" }, bar, alert.el, screen, standings));

  let timer = null;
  let shown = "";
  let board = null;
  let updateScreen = null; // refreshes the live parts of the current screen in place
  let keyChoice = null; // answers with the number keys while a question is open
  const game = new PlayerGame(quizId, (what) => {
    if (what === "screen" || game.screen !== shown) renderScreen();
    else if (what === "answer") {
      renderScreen(true);
      screen.querySelector("[data-testid=answer-result]")?.focus();
    } else updateScreen?.();
    renderBar();
    renderStandings();
    renderConnection();
  });

  function renderConnection() {
    const text =
      {
        live: "",
        reconnecting: "Reconnecting…",
        offline: "Offline: waiting for the network…",
        stopped: "Disconnected",
      }[game.connection] ?? "";
    connectionStatus(text);
    if (game.connection === "stopped" && game.problem) alert.show(game.problem);
  }

  function renderBar() {
    if (!game.me) {
      fill(bar, h("span", { class: "bar-title", text: game.title || `Quiz ${quizId}` }));
      return;
    }
    const progress = game.question ? `Question ${game.question.index + 1} of ${game.questionCount}` : "";
    fill(
      bar,
      h(
        "span",
        { class: "bar-title" },
        game.title,
        progress && h("span", { class: "bar-progress", text: ` · ${progress}` }),
      ),
      h(
        "span",
        { class: "bar-me" },
        h("span", { class: "bar-nick", text: game.me.nickname }),
        h(
          "span",
          { class: "pill", "data-testid": "my-score", "data-value": game.score },
          formatNumber(game.score),
          " pts",
          srOnly(" (your score)"),
        ),
        // Before the start everyone has 0 points: a rank would only be join order.
        game.phase !== "lobby" &&
          h(
            "span",
            { class: "pill rank", "data-testid": "my-rank", "data-value": game.rank ?? "" },
            srOnly("Rank "),
            game.rank ? `#${game.rank}` : "–",
            game.players ? ` of ${game.players}` : "",
          ),
      ),
    );
  }

  function renderStandings() {
    const show = ["question", "closed", "final"].includes(game.phase);
    standings.hidden = !show;
    if (!show) return;
    if (!board) {
      board = new Leaderboard({ label: "Top 10", me: game.me?.player_id });
      fill(
        standings,
        h("h2", { id: "standings-title", text: "Leaderboard" }),
        h("p", { class: "my-place", "data-testid": "my-place" }),
        h("div", { class: "around" }),
        h("h3", { text: "Top 10" }),
        board.el,
      );
    }
    const [, place, around] = standings.children;
    fill(
      place,
      game.rank
        ? [
            `You are `,
            h("strong", { text: ordinal(game.rank) }),
            ` of ${game.players} with `,
            h("strong", { text: formatNumber(game.score) }),
            " points.",
          ]
        : "Waiting for the first scores…",
    );
    fill(around, game.around?.player ? neighbours(game.around, game.me.player_id) : null);
    board.update(game.snapshot?.entries ?? []);
  }

  function renderScreen(keepFocus = false) {
    timer?.stop();
    timer = null;
    const changed = game.screen !== shown;
    shown = game.screen;
    keyChoice = null;
    updateScreen = null;
    const view = {
      loading: () => [h("h1", { text: "Loading quiz…" })],
      missing: missingScreen,
      join: joinScreen,
      lobby: lobbyScreen,
      question: questionScreen,
      closed: closedScreen,
      final: finalScreen,
    }[game.phase]();
    fill(screen, view);
    updateScreen?.();
    if (changed && !keepFocus) {
      alert.clear();
      focusHeading(screen);
    }
  }

  function missingScreen() {
    const transient = game.problem instanceof ApiError && game.problem.transient;
    return [
      h("h1", { text: transient ? "QuizMesh cannot be reached" : "This quiz is not available" }),
      h("p", { class: "alert", role: "alert", text: sentence(game.problem?.message ?? "Unknown error") }),
      h(
        "p",
        { class: "row" },
        transient &&
          h("button", {
            type: "button",
            class: "primary",
            text: "Try again",
            onclick: () => location.reload(),
          }),
        h("a", { href: "#/", class: "button", text: "Enter another code" }),
      ),
    ];
  }

  /** Why this quiz cannot be joined now, or null. A lock can be lifted: the player
   * may look again. */
  function whyNoJoining() {
    if (game.quizState === "CLOSED") return { text: "This quiz has finished." };
    if (game.quizState === "RUNNING" && !game.allowLateJoin)
      return { text: "This quiz has already started; joining is closed." };
    if (game.lobbyLocked) {
      const text = "The host has locked this quiz: nobody can join now. Ask the host to unlock it.";
      return { text, again: true };
    }
    return null;
  }

  function joinScreen() {
    const title = game.title ? `Join “${game.title}”` : `Join quiz ${quizId}`;
    const shut = whyNoJoining();
    if (shut) {
      return [
        h("h1", { text: title }),
        game.notice && h("p", { class: "notice", text: sentence(game.notice) }),
        h("p", { "data-testid": "join-closed", text: shut.text }),
        h(
          "p",
          { class: "row" },
          shut.again &&
            h("button", {
              type: "button",
              class: "primary",
              text: "Try again",
              onclick: async () => {
                await game.prepareJoin();
                if (game.lobbyLocked) announce("Still locked.");
              },
            }),
          h("a", { href: "#/", class: "button", text: "Enter another code" }),
        ),
      ];
    }
    const input = h("input", {
      id: "nickname",
      name: "nickname",
      required: true,
      maxlength: LIMITS.JoinQuizRequest.nickname.max_len,
      autocomplete: "nickname",
      autocapitalize: "words",
      spellcheck: "false",
      "aria-describedby": "nickname-help",
    });
    const button = h("button", { type: "submit", class: "primary", text: "Join" });
    const form = h(
      "form",
      {
        class: "card stack",
        onsubmit: async (e) => {
          e.preventDefault();
          const nickname = input.value.trim();
          if (!nickname) {
            alert.show("Pick a nickname first.");
            input.focus();
            return;
          }
          button.disabled = true;
          button.textContent = "Joining…";
          try {
            await game.join(nickname);
          } catch (error) {
            alert.show(error, error.code === Code.ALREADY_EXISTS ? "Nickname taken." : "");
            button.disabled = false;
            button.textContent = "Join";
            input.focus();
          }
        },
      },
      h("label", { for: "nickname", text: "Your nickname" }),
      input,
      h("p", { id: "nickname-help", class: "hint", text: "Shown on the leaderboard; up to 32 characters." }),
      button,
    );
    return [
      h("h1", { text: title }),
      game.notice && h("p", { class: "notice", text: sentence(game.notice) }),
      game.quizState === "RUNNING" &&
        h("p", {
          class: "lead",
          "data-testid": "late-join",
          text: "The quiz has started: you join with 0 points and play from the current question.",
        }),
      form,
    ];
  }

  function lobbyScreen() {
    const count = h("h2", { id: "lobby-title", "data-testid": "player-count" });
    const chips = h("ul", { class: "chips", "aria-label": "Players" });
    updateScreen = () => {
      const names = (game.snapshot?.entries ?? []).map((e) => e.nickname);
      const more = game.players - names.length;
      count.textContent = `${game.players} ${game.players === 1 ? "player" : "players"} joined`;
      fill(
        chips,
        names.map((n) => h("li", { class: n === game.me.nickname ? "chip me" : "chip", text: n })),
        more > 0 && h("li", { class: "chip", text: `and ${more} more` }),
      );
    };
    return [
      h("h1", { text: `You're in, ${game.me.nickname}!` }),
      h("p", { class: "lead", text: "Waiting for the host to start the quiz…" }),
      h("p", {
        class: "hint",
        "data-testid": "feedback-mode",
        text: game.instantFeedback
          ? "Practice quiz: you'll see right or wrong as soon as you answer."
          : "You'll see if each answer is right when its time is up.",
      }),
      h("section", { class: "card", "aria-labelledby": "lobby-title" }, count, chips),
    ];
  }

  /** Right or wrong, and the points once the server has told them (null until then);
   * a withheld result of a closed question is judged by its revealed choice. */
  function outcome(answer, index) {
    if (answer.revealed) return { right: Boolean(answer.correct), points: answer.points_awarded ?? 0 };
    if (!game.reveals.has(index)) return null;
    return { right: answer.choice_index === game.reveals.get(index), points: null };
  }

  /** The line about the question before the open one, kept up to date in place. */
  function previousResult() {
    const index = (game.question?.index ?? 0) - 1;
    if (index < 0 || !game.reveals.has(index)) return null;
    const el = h("p", { class: "previous", "data-testid": "previous-result" });
    const update = () => {
      const mine = game.answers.get(index);
      const result = mine && outcome(mine, index);
      const verdict = !mine
        ? "you did not answer"
        : !result.right
          ? "you missed it"
          : result.points === null
            ? "you got it"
            : `you got it (+${formatNumber(result.points)})`;
      el.textContent = `Question ${index + 1}: ${verdict}.`;
    };
    update();
    return { el, update };
  }

  function choiceButtons(question, { answered, correct = null, onPick = null }) {
    return h(
      "ul",
      { class: `choices choices-${question.choices.length}`, "aria-label": "Choices" },
      question.choices.map((text, i) => {
        const chosen = answered?.choice_index === i || game.sending === i;
        const classes = [`choice`, `choice-${i}`];
        if (chosen) classes.push("chosen");
        if (correct !== null) classes.push(i === correct ? "correct" : "wrong");
        const label = [
          h("span", { class: "choice-key", "aria-hidden": "true", text: `${SHAPES[i]} ${LETTERS[i]}` }),
          h("span", { class: "choice-text", text }),
        ];
        if (correct === i) label.push(h("span", { class: "choice-mark", text: " ✓ correct" }));
        return h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: classes.join(" "),
              "aria-pressed": String(chosen),
              disabled: !onPick || answered || game.sending !== null,
              onclick: onPick ? () => onPick(i) : undefined,
            },
            label,
          ),
        );
      }),
    );
  }

  function questionScreen() {
    const q = game.question;
    const answered = game.answers.get(q.index);
    const result = h("p", {
      class: "result",
      role: "status",
      tabindex: "-1",
      "data-testid": "answer-result",
    });
    const deadline = millis(q.deadline);
    const timeUp = game.clock.now() >= deadline;
    const pick = async (i) => {
      alert.clear();
      try {
        await game.answer(i);
      } catch (error) {
        alert.show(answerProblem(error));
      }
    };
    if (answered?.revealed) {
      fill(
        result,
        answered.correct
          ? [h("strong", { text: "Correct!" }), ` +${formatNumber(answered.points_awarded ?? 0)} points`]
          : [h("strong", { text: "Not this time." }), " 0 points"],
      );
      result.classList.add(answered.correct ? "good" : "bad");
    } else if (answered) {
      // Withheld until the question closes: only which choice arrived.
      fill(
        result,
        h("strong", { text: "Answer received:" }),
        ` “${q.choices[answered.choice_index]}”. `,
        timeUp ? "Time's up! Waiting for the answer…" : "You'll see if it's right when time is up.",
      );
    } else if (game.sending !== null) {
      result.textContent = "Sending your answer…";
    } else if (timeUp) {
      result.textContent = "Time's up! Waiting for the answer…";
    }
    if (!timeUp) {
      // Still running after an answer: it says when the answer will be revealed.
      timer = countdown({
        deadline,
        limitMs: q.time_limit_ms,
        clock: game.clock,
        onEnd: () => {
          if (game.sending === null) renderScreen(true);
        },
      });
    }
    if (!answered && !timeUp) keyChoice = (i) => i < q.choices.length && pick(i);
    const previous = previousResult();
    updateScreen = () => previous?.update();
    return [
      previous?.el,
      h("p", {
        class: "eyebrow",
        text: `Question ${q.index + 1} of ${game.questionCount} · ${formatNumber(q.points)} points`,
      }),
      h("h1", { class: "question-text", text: q.text }),
      timer?.el,
      choiceButtons(q, { answered, onPick: !answered && !timeUp ? pick : null }),
      result,
      !answered && !timeUp && h("p", { class: "hint", text: `Tip: press 1–${q.choices.length} to answer.` }),
    ];
  }

  function closedScreen() {
    const q = game.question;
    const correct = game.reveals.get(q.index);
    const last = q.index + 1 >= game.questionCount;
    const verdict = () => {
      const answered = game.answers.get(q.index);
      if (!answered) return { text: "You didn't answer this one.", right: false };
      const { right, points } = outcome(answered, q.index);
      const chose = `You answered “${q.choices[answered.choice_index]}”`;
      // Judged here from the revealed choice until GetPlayerScore tells the points.
      if (points === null)
        return { text: right ? "You got it right! Counting your points…" : `${chose}.`, right };
      return {
        text: right ? `You got it right: +${formatNumber(points)} points.` : `${chose}: 0 points.`,
        right,
      };
    };
    const first = verdict();
    // The screen is announced once; the points that follow are read from the status.
    announce(`The answer was ${q.choices[correct]}. ${first.text}`);
    const result = h("p", {
      class: `result ${first.right ? "good" : "bad"}`,
      role: "status",
      "data-testid": "answer-result",
      text: first.text,
    });
    // The counts come with the question's QuestionClosed, which may follow the reveal.
    const bars = h("div", { class: "distribution-slot" });
    updateScreen = () => {
      if (!bars.firstChild && game.counts.has(q.index))
        fill(bars, distribution(q.choices, game.counts.get(q.index), correct));
      const now = verdict();
      if (now.text === result.textContent) return;
      result.textContent = now.text;
      result.className = `result ${now.right ? "good" : "bad"}`;
    };
    return [
      h("p", { class: "eyebrow", text: `Question ${q.index + 1} of ${game.questionCount} · closed` }),
      h("h1", { class: "question-text", text: q.text }),
      h(
        "p",
        { class: "reveal", "data-testid": "reveal" },
        "The answer was ",
        h("strong", { text: `“${q.choices[correct]}”` }),
        ".",
      ),
      result,
      choiceButtons(q, { answered: game.answers.get(q.index), correct }),
      bars,
      h("p", {
        class: "lead",
        text: last ? "That was the last question. Final results coming…" : "Get ready for the next question…",
      }),
    ];
  }

  function finalScreen() {
    const place = h("p", { class: "final-place", "data-testid": "final-place" });
    const steps = h("div", { class: "podium-slot" });
    updateScreen = () => {
      place.dataset.value = game.rank ?? "";
      fill(
        place,
        game.rank
          ? [
              `You finished `,
              h("strong", { text: ordinal(game.rank) }),
              ` of ${game.players} with ${formatNumber(game.score)} points.`,
            ]
          : "Counting the final scores…",
      );
      fill(steps, podium(game.snapshot?.entries ?? [], { me: game.me?.player_id }));
    };
    return [
      h("h1", { text: "Final results" }),
      place,
      steps,
      h("p", {}, h("a", { href: "#/", class: "button", text: "Play another quiz" })),
    ];
  }

  // Number keys 1-6 answer the open question (not while typing in a field).
  const onKey = (e) => {
    if (!keyChoice || e.altKey || e.ctrlKey || e.metaKey || e.target.closest?.("input, textarea, select"))
      return;
    const n = Number.parseInt(e.key, 10);
    if (n >= 1 && n <= 6) {
      e.preventDefault();
      keyChoice(n - 1);
    }
  };
  document.addEventListener("keydown", onKey);

  renderBar();
  renderScreen();
  game.load();
  return () => {
    game.stop();
    timer?.stop();
    document.removeEventListener("keydown", onKey);
    connectionStatus("");
  };
}

/** What to tell a player whose answer was refused. The server's messages count
 * questions from 0; the player sees them counted from 1, so some are rephrased. */
function answerProblem(error) {
  if (!(error instanceof ApiError)) return String(error);
  if (error.code === Code.ALREADY_EXISTS)
    return "You already answered this question; your first answer counts.";
  if (error.code === Code.FAILED_PRECONDITION && /too late/i.test(error.message)) {
    return "Too late: time ran out before your answer arrived.";
  }
  if (error.code === Code.FAILED_PRECONDITION && /question \d+ is (closed|not open)/i.test(error.message)) {
    return "This question is not open any more.";
  }
  if (error.code === Code.RESOURCE_EXHAUSTED) return `Slow down. ${sentence(error.message)}`;
  if (error.code === Code.UNAUTHENTICATED) return `${sentence(error.message)} Reload the page to join again.`;
  return error.message;
}
