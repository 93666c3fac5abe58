// The subset of YAML that quiz files use, both ways: read as the host writes it
// (parseYaml) and written so that this reader and PyYAML (quizctl) read it back
// unchanged (yamlText).

/** A document this reader cannot read; the message names the line. */
export class YamlError extends Error {
  name = "YamlError";
}

// --- Reading ------------------------------------------------------------------------
// Block mappings and sequences by indentation, `- key: value` items, flow lists
// `[a, "b"]`, quoted and plain scalars, comments. Anything else is refused with
// its line number rather than guessed at.

export function parseYaml(source) {
  const lines = [];
  source.split(/\r?\n/).forEach((raw, i) => {
    if (raw.includes("\t") && /^\s*\t/.test(raw))
      throw new YamlError(`line ${i + 1}: indent with spaces, not tabs`);
    const body = stripComment(raw).trimEnd();
    if (!body.trim() || body.trim() === "---") return;
    lines.push({ indent: body.length - body.trimStart().length, text: body.trim(), number: i + 1 });
  });
  if (!lines.length) return null;
  const state = { lines, i: 0 };
  const value = block(state, lines[0].indent);
  if (state.i < lines.length) fail(lines[state.i], "unexpected indentation");
  return value;
}

function fail(line, message) {
  throw new YamlError(`line ${line.number}: invalid YAML: ${message}`);
}

function stripComment(line) {
  let quote = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === "#" && (i === 0 || /\s/.test(line[i - 1]))) {
      return line.slice(0, i);
    }
  }
  return line;
}

const isItem = (text) => text === "-" || text.startsWith("- ");

function block(state, indent) {
  const line = state.lines[state.i];
  return isItem(line.text) ? sequence(state, indent) : mapping(state, indent);
}

function sequence(state, indent) {
  const items = [];
  while (state.i < state.lines.length) {
    const line = state.lines[state.i];
    if (line.indent < indent || !isItem(line.text)) break;
    if (line.indent > indent) fail(line, "unexpected indentation");
    const rest = line.text.slice(1).trimStart();
    if (!rest) {
      state.i++;
      items.push(nested(state, indent));
    } else if (keyValue(rest)) {
      // "- key: value" starts a mapping whose keys line up with "key".
      const column = indent + (line.text.length - rest.length);
      state.lines[state.i] = { ...line, indent: column, text: rest };
      items.push(mapping(state, column));
    } else {
      state.i++;
      items.push(scalar(rest, line));
    }
  }
  return items;
}

function mapping(state, indent) {
  const result = {};
  while (state.i < state.lines.length) {
    const line = state.lines[state.i];
    if (line.indent < indent) break;
    if (line.indent > indent) fail(line, "unexpected indentation");
    const pair = keyValue(line.text);
    if (!pair) fail(line, `expected "key: value", got ${JSON.stringify(line.text)}`);
    if (pair.key in result) fail(line, `${pair.key} appears twice`);
    state.i++;
    if (pair.value) {
      result[pair.key] = scalar(pair.value, line);
    } else {
      const next = state.lines[state.i];
      // A list may sit at the key's own indentation ("key:\n- a").
      result[pair.key] =
        next && next.indent === indent && isItem(next.text) ? sequence(state, indent) : nested(state, indent);
    }
  }
  return result;
}

function nested(state, parentIndent) {
  const next = state.lines[state.i];
  return next && next.indent > parentIndent ? block(state, next.indent) : null;
}

function keyValue(text) {
  const match = /^([A-Za-z_][\w-]*)\s*:(?:\s+(.*))?$/.exec(text);
  return match ? { key: match[1], value: match[2]?.trim() ?? "" } : null;
}

function scalar(text, line) {
  if (text === "|" || text === ">" || /^[|>][+-]?$/.test(text))
    fail(line, "block scalars (| and >) are not supported; write the text on one line, in quotes");
  if (text.startsWith("[")) return flowList(text, line);
  if (text.startsWith("{")) fail(line, "inline mappings ({...}) are not supported; use one key per line");
  if (text.startsWith('"')) {
    try {
      return JSON.parse(text);
    } catch {
      fail(line, `unterminated or invalid double-quoted text: ${text}`);
    }
  }
  if (text.startsWith("'")) {
    if (!/^'(?:[^']|'')*'$/.test(text)) fail(line, `unterminated single-quoted text: ${text}`);
    return text.slice(1, -1).replace(/''/g, "'");
  }
  if (/^(~|null|Null|NULL)$/.test(text)) return null;
  // YAML 1.1 booleans, as PyYAML (and so quizctl) reads them.
  if (/^(true|True|TRUE|yes|Yes|YES|on|On|ON)$/.test(text)) return true;
  if (/^(false|False|FALSE|no|No|NO|off|Off|OFF)$/.test(text)) return false;
  if (/^[-+]?\d+$/.test(text)) return Number.parseInt(text, 10);
  if (/^[-+]?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return Number.parseFloat(text);
  return text;
}

function flowList(text, line) {
  if (!text.endsWith("]")) fail(line, "a list in brackets must end on the same line with ]");
  const items = [];
  let current = "";
  let quote = null;
  const inner = text.slice(1, -1);
  for (let i = 0; i < inner.length; i++) {
    const c = inner[i];
    if (quote) {
      current += c;
      if (c === "\\" && quote === '"') current += inner[++i] ?? "";
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'") {
      quote = c;
      current += c;
    } else if (c === "[" || c === "{") {
      fail(line, "nested lists or mappings in brackets are not supported");
    } else if (c === ",") {
      items.push(current.trim());
      current = "";
    } else {
      current += c;
    }
  }
  if (quote) fail(line, "unterminated quoted text in the list");
  if (current.trim()) items.push(current.trim());
  return items.map((item) => scalar(item, line));
}

// --- Writing ------------------------------------------------------------------------

/** `document` (a mapping of scalars, lists of scalars and lists of mappings: a quiz
 * file's shapes) as YAML in the style of examples/quiz.yaml: lists of scalars in
 * brackets on one line, lists of mappings as "- key: value" blocks a blank line
 * apart, text plain where both readers take it as that text, else in double quotes. */
export function yamlText(document) {
  return `${mappingLines(document, 0).join("\n")}\n`;
}

function mappingLines(mapping, indent) {
  const pad = " ".repeat(indent);
  const lines = [];
  for (const [key, value] of Object.entries(mapping)) {
    if (Array.isArray(value) && value.some((item) => typeof item === "object")) {
      lines.push(`${pad}${key}:`);
      value.forEach((item, i) => {
        const [first, ...rest] = mappingLines(item, indent + 4);
        if (i) lines.push("");
        lines.push(`${pad}  - ${first.trimStart()}`, ...rest);
      });
    } else {
      lines.push(`${pad}${key}: ${inline(value, false)}`);
    }
  }
  return lines;
}

function inline(value, inBrackets) {
  if (Array.isArray(value)) return `[${value.map((item) => inline(item, true)).join(", ")}]`;
  if (typeof value !== "string") return String(value); // numbers and booleans
  return readsPlain(value, inBrackets) ? value : quoted(value);
}

// Starts with a letter (no indicator, number or date), ends with neither a space
// nor a character YAML might take for syntax; "?" ends a plain scalar in brackets
// for PyYAML. Words that read as booleans or null are quoted.
const PLAIN = /^\p{L}(?:[\p{L}\p{M}\p{N} .?!()\/&+-]*[\p{L}\p{M}\p{N}.?!)])?$/u;
const SPECIAL = /^(true|false|yes|no|on|off|y|n|null)$/i;

const readsPlain = (text, inBrackets) =>
  PLAIN.test(text) && !SPECIAL.test(text) && !(inBrackets && text.includes("?"));

// JSON's escapes are YAML's too; YAML also refuses DEL and C1 controls unescaped and
// takes U+2028/U+2029 for line breaks, which JSON.stringify leaves as they are.
const quoted = (text) =>
  JSON.stringify(text).replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
