// The link players open to join a quiz, and whether their phones can open it.
//
// The gateway says at GET config.json (next to this client) where players reach
// it: its public URL, set where QuizMesh runs behind a proxy or at a domain. With
// none, the page's own address serves, unless only this machine can open it
// (localhost): then phones need another address, which `make run` prints.

const LOOPBACK = /^(localhost|.+\.localhost|127(\.\d{1,3}){3}|\[::1\]|0\.0\.0\.0)$/i;

/** The gateway's settings for this client ({} when it has none to give). */
async function clientSettings() {
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    return response.ok ? await response.json() : {};
  } catch {
    return {};
  }
}

/** The folder of an http(s) URL (ending in "/"), or null. */
function folderOf(text) {
  try {
    const url = new URL(text);
    if (!["http:", "https:"].includes(url.protocol)) return null;
    return `${url.origin}${url.pathname.replace(/\/*$/, "/")}`;
  } catch {
    return null;
  }
}

/** {url, forPhones}: where players join `quizId`; forPhones is false when only
 * this machine can open that address. */
export async function joinLink(quizId) {
  const { public_url: publicUrl = "" } = await clientSettings();
  const base = folderOf(publicUrl) ?? `${location.origin}${location.pathname}`;
  return {
    url: `${base}#/play/${encodeURIComponent(quizId)}`,
    forPhones: !LOOPBACK.test(new URL(base).hostname),
  };
}
