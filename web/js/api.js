// The public QuizMesh API, used exactly as a third-party client would: HTTP/JSON
// routes from the protos' google.api.http annotations, and server streams read as
// Server-Sent Events. Same origin as the page (Envoy serves both).

/** gRPC status codes, as carried in error bodies: {"code": 5, "message": "..."}. */
export const Code = Object.freeze({
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
});

const CODE_OF_STATUS = {
  400: Code.INVALID_ARGUMENT,
  401: Code.UNAUTHENTICATED,
  403: Code.PERMISSION_DENIED,
  404: Code.NOT_FOUND,
  409: Code.ALREADY_EXISTS,
  413: Code.RESOURCE_EXHAUSTED,
  429: Code.RESOURCE_EXHAUSTED,
  503: Code.UNAVAILABLE,
};

const OFFLINE = "Can't reach QuizMesh. Check your connection and try again.";

/** A refused call: `code` is the gRPC code, `status` the HTTP status (0: no response),
 * `reason` the ErrorInfo's ("BAD_CREDENTIALS"), `violations` the BadRequest's
 * [{field, description}] naming each bad request field. */
export class ApiError extends Error {
  constructor(code, message, status, { reason = "", violations = [] } = {}) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
    this.reason = reason;
    this.violations = violations;
  }

  /** Worth retrying unchanged, after a pause: the network or a server was briefly
   * away, or a rate limit asks to slow down. */
  get transient() {
    return this.status === 0 || this.status === 429 || this.code === Code.UNAVAILABLE || this.status >= 502;
  }
}

async function errorOf(response) {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    if (typeof body.code === "number" && body.message) {
      return new ApiError(body.code, body.message, response.status, detailsOf(body.details));
    }
  } catch {
    // Not JSON (Envoy answers malformed requests in plain text): show the text.
  }
  const code = CODE_OF_STATUS[response.status] ?? 2;
  return new ApiError(code, text.trim() || `the server answered ${response.status}`, response.status);
}

/** The google.rpc details a client acts on, from an error body's "details". */
function detailsOf(details) {
  const of = (type) => (Array.isArray(details) ? details : []).find((d) => d?.["@type"]?.endsWith(type));
  return {
    reason: of("/google.rpc.ErrorInfo")?.reason ?? "",
    violations: of("/google.rpc.BadRequest")?.field_violations ?? [],
  };
}

function headers(token, json) {
  const h = { accept: "application/json" };
  if (token) h.authorization = `Bearer ${token}`;
  if (json) h["content-type"] = "application/json";
  return h;
}

function url(path, query = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const q = params.toString();
  return q ? `${path}?${q}` : path;
}

/** `read` takes the body of a successful response: JSON unless told otherwise. */
async function call(method, path, { token, body, query, read = (response) => response.json() } = {}) {
  let response;
  try {
    response = await fetch(url(path, query), {
      method,
      headers: headers(token, body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(Code.UNAVAILABLE, OFFLINE, 0);
  }
  if (!response.ok) throw await errorOf(response);
  return read(response);
}

const quiz = (id) => `/v1/quizzes/${encodeURIComponent(id)}`;
const libraryQuiz = (id) => `/v1/library/quizzes/${encodeURIComponent(id)}`;

/** One function per RPC; names and fields follow the protos. */
export const api = {
  createQuiz: (hostToken, request) => call("POST", "/v1/quizzes", { token: hostToken, body: request }),
  getQuiz: (quizId, token) => call("GET", quiz(quizId), { token }),
  listQuizzes: (pageSize, pageToken) =>
    call("GET", "/v1/quizzes", { query: { page_size: pageSize, page_token: pageToken } }),
  // The host's own games, newest first (their history).
  listMyQuizzes: (hostToken, pageSize, pageToken) =>
    call("GET", "/v1/quizzes", { token: hostToken, query: { mine: true, page_size: pageSize, page_token: pageToken } }),
  getQuizReport: (hostToken, quizId) => call("GET", `${quiz(quizId)}/report`, { token: hostToken }),
  // The body as it came (a Blob of text/csv), so a download keeps its bytes.
  getQuizReportCsv: (hostToken, quizId) =>
    call("GET", `${quiz(quizId)}/report:csv`, { token: hostToken, read: (response) => response.blob() }),
  joinQuiz: (quizId, nickname) => call("POST", `${quiz(quizId)}:join`, { body: { nickname } }),
  startQuiz: (hostToken, quizId) => call("POST", `${quiz(quizId)}:start`, { token: hostToken, body: {} }),
  advanceQuestion: (hostToken, quizId) =>
    call("POST", `${quiz(quizId)}:advance`, { token: hostToken, body: {} }),
  closeQuiz: (hostToken, quizId) => call("POST", `${quiz(quizId)}:close`, { token: hostToken, body: {} }),
  setLobby: (hostToken, quizId, locked) =>
    call("POST", `${quiz(quizId)}:lobby`, { token: hostToken, body: { locked } }),
  submitAnswer: (playerToken, quizId, questionIndex, choiceIndex) =>
    call("POST", `${quiz(quizId)}/answers`, {
      token: playerToken,
      body: { question_index: questionIndex, choice_index: choiceIndex },
    }),
  getPlayerScore: (token, quizId, playerId) =>
    call("GET", `${quiz(quizId)}/players/${encodeURIComponent(playerId)}/score`, { token }),
  getLeaderboard: (quizId, pageSize) =>
    call("GET", `${quiz(quizId)}/leaderboard`, { query: { page_size: pageSize } }),
  getPlayerRank: (quizId, playerId, neighbours) =>
    call("GET", `${quiz(quizId)}/players/${encodeURIComponent(playerId)}/rank`, { query: { neighbours } }),
  // The host's quiz library (library.proto): all with the host's token. `content` is
  // {title, questions, instant_feedback, allow_late_join}, as in CreateQuiz.
  createLibraryQuiz: (hostToken, content) =>
    call("POST", "/v1/library/quizzes", { token: hostToken, body: content }),
  listLibraryQuizzes: (hostToken, pageSize, pageToken) =>
    call("GET", "/v1/library/quizzes", {
      token: hostToken,
      query: { page_size: pageSize, page_token: pageToken },
    }),
  getLibraryQuiz: (hostToken, id) => call("GET", libraryQuiz(id), { token: hostToken }),
  updateLibraryQuiz: (hostToken, id, content, expectedVersion) =>
    call("POST", `${libraryQuiz(id)}:update`, {
      token: hostToken,
      body: { ...content, expected_version: expectedVersion },
    }),
  duplicateLibraryQuiz: (hostToken, id) =>
    call("POST", `${libraryQuiz(id)}:duplicate`, { token: hostToken, body: {} }),
  deleteLibraryQuiz: (hostToken, id) =>
    call("POST", `${libraryQuiz(id)}:delete`, { token: hostToken, body: {} }),
  playLibraryQuiz: (hostToken, id) => call("POST", `${libraryQuiz(id)}:play`, { token: hostToken, body: {} }),
  // Host accounts (account.proto): all made without a token.
  signUp: (request) => call("POST", "/v1/accounts", { body: request }),
  signIn: (email, password) => call("POST", "/v1/sessions", { body: { email, password } }),
  refreshSession: (refreshToken) =>
    call("POST", "/v1/sessions:refresh", { body: { refresh_token: refreshToken } }),
  signOut: (refreshToken) => call("POST", "/v1/sessions:signOut", { body: { refresh_token: refreshToken } }),
};

/** Timestamps are RFC 3339; Date.parse keeps milliseconds of longer fractions. */
export const millis = (timestamp) => (timestamp ? Date.parse(timestamp) : NaN);

/** Calls `fn` again while no reply arrives at all (the phone's network is away), a
 * rate limit asks to slow down or a stopping server cancelled it; for idempotent
 * calls only. A replica's UNAVAILABLE
 * is not retried here: the gateway retries those calls itself (its retry policy,
 * services/mesh/retries.py), so a 503 that reaches the page is already the last try. */
export async function retrying(fn, { attempts = 4, firstDelay = 300 } = {}) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      // 499: a server stopped before taking the call (CANCELLED), as 503 retried once more.
      const again =
        error instanceof ApiError && (error.status === 0 || error.status === 429 || error.status === 499);
      if (!again || attempt >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, firstDelay * 2 ** (attempt - 1)));
    }
  }
}

// --- Server streams ------------------------------------------------------------

const HEARTBEAT_GRACE_MS = 40_000; // the services send a heartbeat every 15 s
const MAX_BACKOFF_MS = 5_000;

/**
 * A server stream read as SSE over fetch(), so the client sees HTTP errors (a
 * quiz that does not exist must not be retried forever) and can send its token
 * in a header. It reconnects after network errors, a silent connection or the
 * server ending the stream (a restart drains streams), asking `query()` where to
 * resume each time: the quiz event stream passes the last sequence it saw, so
 * no event is missed and none is applied twice.
 *
 * Whether it is connected is what the server answers, never navigator.onLine: a
 * laptop serving a quiz on a network that is down (or only on loopback) believes
 * it is offline, yet reaches its server. The browser's online/offline events are
 * only hints to try again at once.
 *
 * onMessage(json) for each message; onState("live" | "reconnecting" | "offline"),
 * "offline" when the last attempt got no answer at all; onFatal(ApiError) when
 * retrying cannot help (then the stream stops).
 */
export class ServerStream {
  constructor(path, { token, query = () => ({}), onMessage, onState = () => {}, onFatal = () => {} }) {
    Object.assign(this, { path, token, query, onMessage, onState, onFatal });
    this.stopped = false;
    this.controller = null;
    this.backoff = 250;
    this.wakeUp = null;
    this.recheck = false;
    this.onOnline = () => {
      this.backoff = 250;
      this.wakeUp?.();
    };
    // A connection open when the network goes away may hang instead of failing:
    // drop it and ask the server again at once (it may well answer).
    this.onOffline = () => {
      this.recheck = true;
      this.controller?.abort();
    };
  }

  start() {
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOffline);
    this.loop();
    return this;
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOffline);
    this.controller?.abort();
    this.wakeUp?.();
  }

  async loop() {
    while (!this.stopped) {
      try {
        this.recheck = false;
        await this.connectOnce();
        if (this.stopped) return;
        this.onState("reconnecting"); // the server ended the stream (a restart drains them)
      } catch (error) {
        if (this.stopped) return;
        if (error instanceof ApiError && !error.transient) {
          this.stop();
          this.onFatal(error);
          return;
        }
        if (this.recheck) {
          this.recheck = false; // dropped on the browser's hint: no verdict yet
          continue;
        }
        this.onState(error.status === 0 ? "offline" : "reconnecting", error);
      }
      await this.pause(this.backoff); // the "online" event ends the pause early
      this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    }
  }

  pause(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = done;
    });
  }

  async connectOnce() {
    const controller = new AbortController();
    this.controller = controller;
    let watchdog;
    const feed = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller.abort(), HEARTBEAT_GRACE_MS);
    };
    let response;
    try {
      feed();
      response = await fetch(url(this.path, this.query()), {
        headers: { ...headers(this.token, false), accept: "text/event-stream" },
        cache: "no-store",
        signal: controller.signal,
      });
    } catch {
      clearTimeout(watchdog);
      throw new ApiError(Code.UNAVAILABLE, OFFLINE, 0);
    }
    try {
      if (!response.ok) throw await errorOf(response);
      this.onState("live");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        feed();
        buffer += value;
        const frames = buffer.split(/\r?\n\r?\n/);
        buffer = frames.pop();
        for (const frame of frames) {
          const data = frame
            .split(/\r?\n/)
            .filter((line) => line.startsWith("data:"))
            .map((line) => line.slice(5).trimStart())
            .join("\n");
          if (!data) continue;
          this.backoff = 250;
          this.onMessage(JSON.parse(data));
          if (this.stopped) return;
        }
      }
    } catch (error) {
      if (error instanceof ApiError) throw error;
      throw new ApiError(Code.UNAVAILABLE, OFFLINE, 0); // the connection broke
    } finally {
      clearTimeout(watchdog);
      controller.abort();
    }
  }
}

/** GET /v1/quizzes/{id}/events:watch, resuming after the last lifecycle event seen. */
export function watchQuiz(quizId, { token, afterSequence = 0, onEvent, onState, onFatal }) {
  const stream = new ServerStream(`${quiz(quizId)}/events:watch`, {
    token,
    query: () => ({ after_sequence: stream.sequence }),
    onMessage: ({ event, heartbeat }) => {
      if (heartbeat || !event) return; // {"heartbeat": true}, as on the board stream
      const sequence = Number(event.sequence || 0);
      // Leaderboard events repeat the latest sequence; only lifecycle events move
      // it (they are the ones replayed on resume).
      const lifecycle = !event.leaderboard_changed;
      if (lifecycle) {
        if (sequence <= stream.sequence) return; // already applied before a reconnect
        stream.sequence = sequence;
      }
      onEvent(event, lifecycle);
    },
    onState,
    onFatal,
  });
  stream.sequence = Number(afterSequence) || 0;
  return stream.start();
}

/** GET /v1/quizzes/{id}/leaderboard:watch: the latest snapshot (state, not deltas). */
export function watchLeaderboard(quizId, { token, onUpdate, onState, onFatal }) {
  return new ServerStream(`${quiz(quizId)}/leaderboard:watch`, {
    token,
    onMessage: (message) => {
      if (!message.heartbeat) onUpdate(message);
    },
    onState,
    onFatal,
  }).start();
}
