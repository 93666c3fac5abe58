// QR codes, drawn by the vendored qrcode-generator (web/vendor/, MIT).

import qrcode from "../vendor/qrcode-generator.mjs";
import { h } from "./dom.js";

const QUIET_ZONE = 4; // modules of white around the code, as scanners expect

/** An <img> of `text` as a QR code (error correction M: still read when a projector
 * blurs or a head hides a little of it); CSS scales it without smoothing. */
export function qrImage(text, alt) {
  const code = qrcode(0, "M"); // 0: the smallest version that holds the text
  code.addData(text);
  code.make();
  const cell = 8;
  const size = (code.getModuleCount() + 2 * QUIET_ZONE) * cell;
  return h("img", {
    class: "qr",
    src: code.createDataURL(cell, QUIET_ZONE * cell),
    alt,
    width: size,
    height: size,
  });
}
