// What the browser remembers between visits, in localStorage: the host's session and,
// per quiz, the player's id and token (rejoining is just using them again) and the
// last quiz event applied (the event stream resumes after it).

const HOST_SESSION = "quizmesh.host_session";
const PLAYER = (quizId) => `quizmesh.player.${quizId}`;
const PLAYER_PREFIX = "quizmesh.player.";

function read(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null; // storage disabled: the app still works, without rejoin
  }
}

function write(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    // Full or disabled storage only costs the rejoin after a reload.
  }
}

/** The signed-in host: {host, session} as SignIn answered them, or for a token
 * pasted from quizctl {host: null, session: {access_token}} (nothing to refresh). */
export const hostSession = {
  get() {
    try {
      const saved = JSON.parse(read(HOST_SESSION) ?? "null");
      return saved?.session?.access_token ? saved : null;
    } catch {
      return null;
    }
  },
  save: (saved) => write(HOST_SESSION, JSON.stringify(saved)),
  clear: () => write(HOST_SESSION, null),
};

/** {player_id, player_token, nickname, last_sequence} of this browser's player in a quiz. */
export const playerSessions = {
  get(quizId) {
    try {
      const session = JSON.parse(read(PLAYER(quizId)) ?? "null");
      return session?.player_id && session?.player_token ? session : null;
    } catch {
      return null;
    }
  },
  save(quizId, session) {
    write(PLAYER(quizId), JSON.stringify(session));
  },
  update(quizId, changes) {
    const session = this.get(quizId);
    if (session) this.save(quizId, { ...session, ...changes });
  },
  forget(quizId) {
    write(PLAYER(quizId), null);
  },
  /** [{quizId, nickname}] of every quiz this browser has joined. */
  all() {
    const found = [];
    try {
      for (let i = 0; i < localStorage.length; i++) {
        const key = localStorage.key(i);
        if (!key?.startsWith(PLAYER_PREFIX)) continue;
        const quizId = key.slice(PLAYER_PREFIX.length);
        const session = this.get(quizId);
        if (session) found.push({ quizId, nickname: session.nickname });
      }
    } catch {
      // no storage, no list
    }
    return found.sort((a, b) => a.quizId.localeCompare(b.quizId));
  },
};

/** The claims of a JWT, without verifying it (the server does): for display only. */
export function tokenClaims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload.padEnd(payload.length + ((4 - (payload.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}
