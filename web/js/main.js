// Routes (in the URL's hash, so Envoy serves one static page for all of them):
//   #/                 home: type a quiz code
//   #/play/CODE        play quiz CODE (the link a host shares)
//   #/host             host: sign in, create a quiz, list yours
//   #/host/CODE        run quiz CODE on the big screen

import { focusHeading } from "./dom.js";
import { mountHome, normalizeCode } from "./views/home.js";
import { mountHost } from "./views/host.js";
import { mountHostLive } from "./views/host-live.js";
import { mountPlayer } from "./views/player.js";

const root = document.getElementById("app");
let unmount = () => {};

function route() {
  const [, section = "", code = ""] = location.hash.replace(/^#\/?/, "/").split("/");
  const quizId = normalizeCode(decodeURIComponent(code));
  if (section === "play" && quizId) return [mountPlayer, { quizId }, "Play"];
  if (section === "host" && quizId) return [mountHostLive, { quizId }, "Host"];
  if (section === "host") return [mountHost, {}, "Host"];
  return [mountHome, {}, ""];
}

function show() {
  unmount();
  const [mount, params, title] = route();
  document.title = title ? `${title}${params.quizId ? ` ${params.quizId}` : ""} · QuizMesh` : "QuizMesh";
  unmount = mount(root, params) ?? (() => {});
  document.body.dataset.view = mount.name;
  focusHeading(root);
}

window.addEventListener("hashchange", show);
show();
