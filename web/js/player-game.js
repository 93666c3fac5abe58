// A player's side of one quiz, without any DOM: what the player view shows, kept
// up to date from the API and the two live streams.
//
// Rejoin: the player's id and token stay in localStorage (storage.js). A reload
// rebuilds the state from GetQuiz (the current question and its deadline, the
// answers of closed questions) and GetPlayerScore (the answers this player gave),
// then resumes the event stream after the last lifecycle event it had applied, so
// events that happened meanwhile are replayed and none is missed. Applying an
// event is idempotent and never moves backwards, so replaying one the GetQuiz
// state already includes changes nothing.
//
// Results: unless the quiz has instant feedback, the server withholds whether an
// answer was right and its points (`revealed: false`) until the question closes,
// and the board moves only then. So the client asks GetPlayerScore again once a
// question it answered has closed (its QuestionClosed, a later question opening,
// the quiz closing, a reload) and never shows points it has not been told.

import { api, ApiError, Code, retrying, watchLeaderboard, watchQuiz } from "./api.js";
import { ServerClock, timed } from "./clock.js";
import { playerSessions } from "./storage.js";

const STATES = { QUIZ_STATE_OPEN: "OPEN", QUIZ_STATE_RUNNING: "RUNNING", QUIZ_STATE_CLOSED: "CLOSED" };
const RANK_REFRESH_MS = 500;
// GetPlayerScore once more after a reply that still withholds a closed question's
// result (a reply read just before the close reached every replica).
const RESULTS_TRIES = 4;
const RESULTS_RETRY_MS = 400;
// How long a closed question's withheld result waits for the board's move before
// GetPlayerScore is asked (doubled at random per phone).
const SETTLE_MS = 1500;

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class PlayerGame {
  /** onChange(what): "screen" when the screen changes, else "standing", "answer",
   * "results" (withheld results were told), "connection". */
  constructor(quizId, onChange) {
    this.quizId = quizId;
    this.onChange = onChange;
    this.clock = new ServerClock();
    this.streams = [];
    this.stopped = false;
    Object.assign(this, {
      phase: "loading", // loading | join | lobby | question | closed | final | missing
      me: null, // {player_id, player_token, nickname}
      title: "",
      quizState: null,
      questionCount: 0,
      instantFeedback: false, // results told as players answer (a practice quiz)
      allowLateJoin: false, // players may join while the quiz runs
      lobbyLocked: false, // the host has locked the lobby: nobody can join
      question: null, // the current question (QuestionView)
      reveals: new Map(), // question index -> correct choice, once closed
      counts: new Map(), // question index -> how many chose each choice, from its QuestionClosed
      answers: new Map(), // question index -> AnswerResult (revealed, or withheld while open)
      sending: null, // the choice being submitted
      score: 0,
      rank: null,
      snapshot: null, // the latest LeaderboardSnapshot
      around: null, // GetPlayerRank reply: player, above, below
      connection: "live",
      problem: null, // why the view cannot go on (quiz missing, ...)
      notice: null, // a message for the join screen
    });
    this.rankTimer = null;
    this.rankBusy = false;
    this.rankDue = false;
    this.rankFetchedAt = 0;
    this.resultsBusy = false;
    this.resultsDue = false;
    // Question index -> the revealed total when its withheld answer was sent: once
    // the question closes, the board's move from it is the answer's points.
    this.scoreBefore = new Map();
  }

  get screen() {
    return `${this.phase}:${this.question?.index ?? ""}`;
  }

  get players() {
    return this.snapshot?.total_players ?? 0;
  }

  async load() {
    const session = playerSessions.get(this.quizId);
    if (session) await this.restore(session);
    else await this.prepareJoin();
  }

  stop() {
    this.stopped = true;
    for (const stream of this.streams) stream.stop();
    clearTimeout(this.rankTimer);
  }

  change(what) {
    if (!this.stopped) this.onChange(what);
  }

  // --- Joining and rejoining -----------------------------------------------------

  async prepareJoin(notice = null) {
    this.notice = notice;
    try {
      const { quiz } = await timed(this.clock, () => api.getQuiz(this.quizId));
      this.applyQuiz(quiz);
      this.phase = "join";
    } catch (error) {
      this.problem = error;
      this.phase = "missing";
    }
    this.change("screen");
  }

  /** Throws the ApiError the view shows (nickname taken, quiz started, rate limited). */
  async join(nickname) {
    const joined = await api.joinQuiz(this.quizId, nickname);
    const session = {
      player_id: joined.player_id,
      player_token: joined.player_token,
      nickname: nickname.trim(),
      last_sequence: 0,
    };
    playerSessions.save(this.quizId, session);
    this.me = session;
    this.applyQuiz(joined.quiz); // a late joiner lands on the open question
    this.notice = null;
    this.startStreams(0);
    this.change("screen");
  }

  async restore(session) {
    this.me = session;
    try {
      const [quizReply, score] = await Promise.all([
        retrying(() => timed(this.clock, () => api.getQuiz(this.quizId, session.player_token))),
        retrying(() => api.getPlayerScore(session.player_token, this.quizId, session.player_id)),
      ]);
      this.applyQuiz(quizReply.quiz);
      this.acceptScore(score);
    } catch (error) {
      if (
        error instanceof ApiError &&
        [Code.UNAUTHENTICATED, Code.PERMISSION_DENIED, Code.NOT_FOUND].includes(error.code)
      ) {
        // The token expired or the player is gone: this browser is not in the quiz anymore.
        playerSessions.forget(this.quizId);
        this.me = null;
        await this.prepareJoin(`Your earlier place in this quiz could not be restored: ${error.message}`);
        return;
      }
      this.problem = error;
      this.phase = "missing";
      this.change("screen");
      return;
    }
    this.startStreams(session.last_sequence ?? 0);
    this.refreshRank();
    this.change("screen");
    // The two replies may straddle a close: ask again for what is still withheld.
    this.revealResults();
  }

  /** GetQuiz/JoinQuiz's Quiz: the state as of now. */
  applyQuiz(quiz) {
    this.title = quiz.title;
    this.quizState = STATES[quiz.state] ?? null;
    this.questionCount = quiz.question_count;
    this.instantFeedback = Boolean(quiz.instant_feedback);
    this.allowLateJoin = Boolean(quiz.allow_late_join);
    this.lobbyLocked = Boolean(quiz.lobby_locked);
    for (const q of quiz.questions ?? []) {
      if (q.correct_choice !== undefined && q.correct_choice !== null)
        this.reveals.set(q.index, q.correct_choice);
    }
    const current = (quiz.questions ?? []).find((q) => q.index === quiz.current_question);
    if (current) this.question = current;
    if (!this.me) return;
    if (this.quizState === "CLOSED") this.phase = "final";
    else if (this.quizState === "RUNNING" && this.question) {
      this.phase = this.reveals.has(this.question.index) ? "closed" : "question";
    } else this.phase = "lobby";
  }

  // --- Live streams --------------------------------------------------------------

  startStreams(afterSequence) {
    const token = this.me.player_token;
    // The connection shown is the worse of the two streams'.
    const states = { events: "live", board: "live" };
    const order = ["live", "reconnecting", "offline", "stopped"];
    const onState = (stream) => (state) => {
      states[stream] = state;
      const worst = order[Math.max(...Object.values(states).map((s) => order.indexOf(s)))];
      if (worst === "live" && this.connection !== "live") {
        this.refreshRank();
        this.revealResults(); // a GetPlayerScore that failed while away
      }
      this.connection = worst;
      this.change("connection");
    };
    const onFatal = (stream) => (error) => {
      this.problem = error;
      onState(stream)("stopped");
    };
    this.streams = [
      watchQuiz(this.quizId, {
        token,
        afterSequence,
        onEvent: (event, lifecycle) => this.onEvent(event, lifecycle),
        onState: onState("events"),
        onFatal: onFatal("events"),
      }),
      watchLeaderboard(this.quizId, {
        token,
        onUpdate: (update) => this.onLeaderboard(update),
        onState: onState("board"),
        onFatal: onFatal("board"),
      }),
    ];
  }

  onEvent(event, lifecycle) {
    const screen = this.screen;
    if (event.quiz_started) {
      this.quizState = "RUNNING";
      this.questionCount = event.quiz_started.question_count;
    } else if (event.question_opened) {
      const { question, question_count: count } = event.question_opened;
      this.questionCount = count;
      // Replayed events of earlier questions change nothing.
      if (this.quizState !== "CLOSED" && (!this.question || question.index > this.question.index)) {
        this.quizState = "RUNNING";
        this.question = question;
        this.phase = this.reveals.has(question.index) ? "closed" : "question";
      }
    } else if (event.question_closed) {
      const { index, correct_choice: correct, choice_counts: counts } = event.question_closed;
      this.reveals.set(index, correct ?? 0);
      if (counts) this.counts.set(index, counts);
      if (this.question?.index === index && this.phase === "question") this.phase = "closed";
    } else if (event.quiz_closed) {
      this.quizState = "CLOSED";
      this.phase = "final";
      this.refreshRank();
    } else if (event.leaderboard_changed) {
      this.acceptSnapshot(event.leaderboard_changed);
    }
    if (lifecycle) playerSessions.update(this.quizId, { last_sequence: Number(event.sequence) });
    this.change(this.screen !== screen ? "screen" : "standing");
    if (event.question_closed || event.question_opened || event.quiz_closed) this.revealResults();
  }

  onLeaderboard({ snapshot, you }) {
    if (snapshot) this.acceptSnapshot(snapshot);
    if (you && you.player_id === this.me?.player_id) {
      const moved = you.rank !== this.rank || you.score !== this.score;
      this.rank = you.rank;
      // Scores never fall: a board read before the close may trail GetPlayerScore.
      this.score = Math.max(this.score, you.score ?? 0);
      if (moved) this.refreshRank();
    }
    this.settle();
    this.change("standing");
  }

  /** Snapshots only move forward (several may arrive through two streams). */
  acceptSnapshot(snapshot) {
    const old = this.snapshot;
    if (old) {
      const mine = [Number(snapshot.version), snapshot.question_index, snapshot.is_final ? 1 : 0];
      const theirs = [Number(old.version), old.question_index, old.is_final ? 1 : 0];
      if (mine.some((v, i) => v < theirs[i])) return;
    }
    this.snapshot = snapshot;
    const entry = snapshot.entries?.find((e) => e.player_id === this.me?.player_id);
    if (entry) {
      this.rank = entry.rank;
      this.score = Math.max(this.score, entry.score ?? 0);
    }
    this.refreshRank();
    this.settle();
  }

  /** GetPlayerRank for the players just above and below: at once when the last
   * call is RANK_REFRESH_MS old, else when it will be (changes come in bursts). */
  refreshRank() {
    if (!this.me || this.stopped) return;
    this.rankDue = true;
    if (this.rankBusy || this.rankTimer) return;
    const wait = Math.max(0, this.rankFetchedAt + RANK_REFRESH_MS - Date.now());
    this.rankTimer = setTimeout(() => this.fetchRank(), wait);
  }

  async fetchRank() {
    this.rankTimer = null;
    if (!this.rankDue || this.stopped) return;
    this.rankDue = false;
    this.rankBusy = true;
    this.rankFetchedAt = Date.now();
    try {
      this.around = await api.getPlayerRank(this.quizId, this.me.player_id, 1);
      this.change("standing");
    } catch {
      // The streams keep rank and score live; the neighbours come with the next change,
      // or when the streams are live again after the server was out of reach.
    } finally {
      this.rankBusy = false;
      if (this.rankDue) this.refreshRank();
    }
  }

  // --- Answering -------------------------------------------------------------------

  /** Submits a choice for the current question; throws the ApiError to show. */
  async answer(choice) {
    const question = this.question;
    if (!question || this.sending !== null || this.answers.has(question.index)) return;
    this.sending = choice;
    this.change("answer");
    try {
      // SubmitAnswer is idempotent: retrying after a lost reply returns the same result.
      const reply = await retrying(() =>
        api.submitAnswer(this.me.player_token, this.quizId, question.index, choice),
      );
      this.answers.set(question.index, reply.result);
      // A withheld result's total leaves this answer out: it tells nothing new.
      if (reply.result.revealed) this.score = Math.max(this.score, reply.total_score ?? 0);
      else this.scoreBefore.set(question.index, reply.total_score ?? 0);
      this.refreshRank();
    } catch (error) {
      if (error instanceof ApiError && error.code === Code.ALREADY_EXISTS) await this.reloadAnswers();
      throw error;
    } finally {
      this.sending = null;
      this.change("answer");
    }
  }

  async reloadAnswers() {
    try {
      this.acceptScore(await this.fetchScore());
    } catch {
      // The error about the answer is shown anyway.
    }
  }

  fetchScore() {
    return retrying(() => api.getPlayerScore(this.me.player_token, this.quizId, this.me.player_id));
  }

  /** A GetPlayerScore reply: a revealed result is never replaced by a withheld one. */
  acceptScore(reply) {
    for (const answer of reply.answers ?? []) {
      const known = this.answers.get(answer.question_index);
      if (!known?.revealed || answer.revealed) this.answers.set(answer.question_index, answer);
    }
    this.score = Math.max(this.score, reply.score ?? 0);
  }

  /** Whether question `index` has closed, so its results are told. */
  closed(index) {
    return this.quizState === "CLOSED" || this.reveals.has(index) || index < (this.question?.index ?? -1);
  }

  /** Answers to closed questions whose result is still withheld here. */
  withheld() {
    return [...this.answers.values()].filter((a) => !a.revealed && this.closed(a.question_index));
  }

  /** Tells what the client can work out itself of a closed question's withheld
   * result: a choice that is not the revealed one earned nothing, and a right one
   * earned what the player's score moved from the total it was sent at (nothing
   * else moves it while the question is open). So at a stadium's close most phones
   * ask the server nothing; the rest ask only if the board does not move in time. */
  settle() {
    let told = false;
    for (const answer of this.withheld()) {
      const index = answer.question_index;
      const correct = this.reveals.get(index);
      const before = this.scoreBefore.get(index);
      if (correct === undefined) continue;
      let points = null;
      if (answer.choice_index !== correct) points = 0;
      // Right, at full or part points: the board's move is more than nothing.
      else if (before !== undefined && this.score > before) points = this.score - before;
      if (points === null) continue;
      this.answers.set(index, { ...answer, revealed: true, correct: points > 0, points_awarded: points });
      told = true;
    }
    if (told) this.change("results");
    return told;
  }

  /** Each closed question's withheld result: worked out here when it can be
   * (settle), else from GetPlayerScore, after a spread-out wait for the board. */
  async revealResults() {
    if (!this.me || this.stopped) return;
    this.settle();
    if (!this.withheld().length) return;
    if (this.resultsBusy) {
      this.resultsDue = true; // the running loop asks again when its reply is in
      return;
    }
    this.resultsBusy = true;
    try {
      // The board's move usually settles it first; the wait is spread so that a
      // crowd's phones do not all ask at once.
      await pause(SETTLE_MS * (1 + Math.random()));
      for (let attempt = 0; attempt < RESULTS_TRIES && this.withheld().length && !this.stopped; attempt++) {
        if (attempt) await pause(RESULTS_RETRY_MS * 2 ** (attempt - 1));
        this.resultsDue = false;
        try {
          this.acceptScore(await this.fetchScore());
        } catch {
          continue; // and once more when the streams are live again
        }
        this.refreshRank();
        this.change("results");
        if (this.resultsDue) attempt = -1; // another question closed meanwhile: at once, all tries again
      }
    } finally {
      this.resultsBusy = false;
    }
  }

  /** Forgets this browser's player in the quiz (to join under another nickname). */
  leave() {
    playerSessions.forget(this.quizId);
  }
}
