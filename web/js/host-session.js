// The signed-in host: an account's session (SignUp/SignIn), whose short-lived access
// token is refreshed just before it runs out, or a token pasted from quizctl (nothing
// to refresh: once it expires the host pastes a new one). Read from storage on every
// use, so all tabs share one session.

import { api, ApiError, millis } from "./api.js";
import { hostSession, tokenClaims } from "./storage.js";

const EARLY_MS = 60_000; // refresh this long before the access token expires
const LOCK = "quizmesh.host-refresh";

/** There is no usable host session (anymore); `message` says why. */
export class SignedOut extends Error {
  name = "SignedOut";
}

let endedBecause = null; // why the last session ended, for the sign-in form to say

/** {id, name, email} of the signed-in host (email null for a pasted token), or null. */
export function signedInHost() {
  const saved = usable(hostSession.get());
  if (!saved) return null;
  if (!saved.host) {
    const subject = tokenClaims(saved.session.access_token).sub;
    return { id: subject, name: subject, email: null };
  }
  return { id: saved.host.host_id, name: saved.host.display_name, email: saved.host.email };
}

/** Why the host was last signed out without asking, or null. */
export const whySignedOut = () => endedBecause;

export const signUp = async (request) => begin(await api.signUp(request));

export const signIn = async (email, password) => begin(await api.signIn(email, password));

/** Signs in with a token `quizctl token --role host` made: what is wrong with it, or null. */
export function useToken(token) {
  const problem = tokenProblem(token);
  if (!problem) begin({ host: null, session: { access_token: token } });
  return problem;
}

/** Forgets the session here and ends it on the server, so its refresh token is spent. */
export async function signOut() {
  const refreshToken = hostSession.get()?.session.refresh_token;
  hostSession.clear();
  endedBecause = null;
  // Gone from this browser either way; an unreachable server leaves the refresh
  // token valid until it expires, but nobody holds it anymore.
  if (refreshToken) await api.signOut(refreshToken).catch(() => {});
}

/**
 * `call(accessToken)` as the signed-in host. The token is refreshed first when it is
 * about to expire, and once more if the gateway still finds it expired (a clock that
 * runs behind). Throws SignedOut when there is no session or it cannot be refreshed.
 */
export async function asHost(call) {
  const token = await accessToken();
  try {
    return await call(token);
  } catch (error) {
    if (!(error instanceof ApiError && error.reason === "TOKEN_EXPIRED")) throw error;
    // An expired token is refused before anything is done: the call is safe to repeat.
    return call(await refreshed(token));
  }
}

function begin({ host, session }) {
  hostSession.save({ host, session });
  endedBecause = null;
}

async function accessToken() {
  const saved = usable(hostSession.get());
  if (!saved) throw new SignedOut(endedBecause ?? "Sign in as the host first (Host a quiz).");
  return refreshDue(saved.session) ? refreshed(saved.session.access_token) : saved.session.access_token;
}

/** Whether an account's access token is about to expire (a pasted token cannot be refreshed). */
const refreshDue = (session) =>
  Boolean(session.refresh_token) && !(millis(session.access_expires_at) - Date.now() > EARLY_MS);

let refreshing = null; // the refresh in flight in this page

/** A fresh access token in place of `stale`. One refresh at a time, across this
 * browser's tabs too where Web Locks exist (secure contexts): two refreshes
 * spending one refresh token would end the session. */
function refreshed(stale) {
  const once = () => refresh(stale);
  refreshing ??= (navigator.locks ? navigator.locks.request(LOCK, once) : once()).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

async function refresh(stale) {
  const saved = hostSession.get();
  if (!saved) throw new SignedOut("You signed out in another tab. Sign in again.");
  const { session } = saved;
  // Another tab refreshed while this one waited for the lock: its token is ours too.
  if (session.access_token !== stale && !refreshDue(session)) return session.access_token;
  if (!session.refresh_token) throw end(saved, "That token has expired; create a new one with quizctl.");
  try {
    const { session: next } = await api.refreshSession(session.refresh_token);
    hostSession.save({ ...saved, session: next });
    return next.access_token;
  } catch (error) {
    if (error instanceof ApiError && error.reason === "SESSION_ENDED")
      throw end(saved, "Your session has ended (signed out, or it expired). Sign in again.");
    throw error; // offline or a server away: the session stays, the next call tries again
  }
}

/** Stored sessions that can still be used; the others are forgotten, saying why. */
function usable(saved) {
  if (!saved) return null;
  const { session } = saved;
  if (session.refresh_token) {
    if (millis(session.refresh_expires_at) > Date.now()) return saved;
    end(saved, "Your session has expired. Sign in again.");
    return null;
  }
  const problem = tokenProblem(session.access_token);
  if (!problem) return saved;
  end(saved, `The saved token cannot be used: ${problem}`);
  return null;
}

function end(saved, message) {
  // Only that session: another tab may have signed in afresh meanwhile.
  if (hostSession.get()?.session.access_token === saved.session.access_token) hostSession.clear();
  endedBecause = message;
  return new SignedOut(message);
}

function tokenProblem(token) {
  const claims = tokenClaims(token);
  if (!claims) return "That does not look like a token: paste the whole line quizctl printed.";
  if (claims.role !== "host") return `That is a ${claims.role ?? "unknown"} token; a host token is needed.`;
  if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now())
    return "That token has expired; create a new one.";
  return null;
}
