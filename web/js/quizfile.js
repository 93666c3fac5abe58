// Quiz files pasted by a host: the same YAML or JSON that `quizctl create` reads
// (see examples/quiz.yaml and quizctl/quizfile.py), turned into a CreateQuizRequest.
// Every mistake is listed at once, naming the field or line to fix.

const QUIZ_FIELDS = ["title", "questions"];
const QUESTION_FIELDS = [
  "text",
  "choices",
  "correct_choice",
  "answer",
  "points",
  "time_limit_ms",
  "time_limit_seconds",
];
const INT32_MAX = 2 ** 31 - 1;

export class QuizFileError extends Error {
  constructor(problems) {
    super(problems.join("\n"));
    this.problems = problems;
  }
}

/** Text (YAML or JSON) -> {title, questions: [{text, choices, correct_choice, points?, time_limit_ms?}]}. */
export function parseQuizText(text) {
  const trimmed = text.trim();
  if (!trimmed) throw new QuizFileError(["the quiz is empty: paste YAML or JSON"]);
  let document;
  if (trimmed.startsWith("{")) {
    try {
      document = JSON.parse(trimmed);
    } catch (e) {
      throw new QuizFileError([`invalid JSON: ${e.message}`]);
    }
  } else {
    document = parseYaml(text);
  }
  return toRequest(document);
}

function kind(value) {
  if (value === null || value === undefined) return "nothing";
  if (typeof value === "boolean") return `${value} (a boolean)`;
  if (typeof value === "number") return `${value} (a number)`;
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return "a list";
  return "a mapping";
}

const isMapping = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function toRequest(document) {
  const problems = [];
  const add = (where, message) => problems.push(where ? `${where}: ${message}` : message);
  if (!isMapping(document)) {
    throw new QuizFileError([`the quiz must be a mapping with title and questions, got ${kind(document)}`]);
  }
  unknownFields(add, "", document, QUIZ_FIELDS);
  const request = { title: text(add, "title", document.title), questions: [] };
  const questions = document.questions;
  if (questions === undefined || questions === null)
    add("questions", "is missing: a quiz needs at least one question");
  else if (!Array.isArray(questions)) add("questions", `must be a list of questions, got ${kind(questions)}`);
  else if (questions.length < 1 || questions.length > 100)
    add("questions", `must have 1-100 questions, got ${questions.length}`);
  else questions.forEach((q, i) => request.questions.push(question(add, `questions[${i}]`, q)));
  if (problems.length) throw new QuizFileError(problems);
  return request;
}

function unknownFields(add, where, value, known) {
  for (const key of Object.keys(value)) {
    if (!known.includes(key))
      add(where ? `${where}.${key}` : key, `unknown field; expected ${known.join(", ")}`);
  }
}

function text(add, where, value) {
  if (value === undefined || value === null) add(where, "is missing");
  else if (typeof value !== "string") add(where, `must be text, got ${kind(value)}; put it in quotes`);
  else if (!value.trim()) add(where, "must not be empty");
  else return value.trim();
  return undefined;
}

function question(add, where, q) {
  if (!isMapping(q)) {
    add(where, `must be a mapping with text and choices, got ${kind(q)}`);
    return null;
  }
  unknownFields(add, where, q, QUESTION_FIELDS);
  const spec = { text: text(add, `${where}.text`, q.text), choices: [] };
  if (!Array.isArray(q.choices) || q.choices.length < 2 || q.choices.length > 6) {
    add(
      `${where}.choices`,
      `must be a list of 2-6 texts, got ${Array.isArray(q.choices) ? `${q.choices.length}` : kind(q.choices)}`,
    );
  } else {
    spec.choices = q.choices.map((c, i) => text(add, `${where}.choices[${i}]`, c));
    const repeated = spec.choices.filter((c, i) => c !== undefined && spec.choices.indexOf(c) !== i);
    if (repeated.length)
      add(`${where}.choices`, `must all differ; repeated: ${[...new Set(repeated)].join(", ")}`);
  }
  const hasIndex = "correct_choice" in q;
  const hasAnswer = "answer" in q;
  if (hasIndex === hasAnswer) {
    add(
      where,
      hasIndex
        ? "give either correct_choice or answer, not both"
        : "names no correct choice: add answer (the exact text of the right choice) or correct_choice (0-based)",
    );
  } else if (hasAnswer) {
    const index = spec.choices.indexOf(typeof q.answer === "string" ? q.answer.trim() : q.answer);
    if (index < 0) add(`${where}.answer`, `${kind(q.answer)} is not one of the choices`);
    spec.correct_choice = index;
  } else if (
    !Number.isInteger(q.correct_choice) ||
    q.correct_choice < 0 ||
    q.correct_choice >= spec.choices.length
  ) {
    add(`${where}.correct_choice`, `must be a 0-based index into the choices, got ${kind(q.correct_choice)}`);
  } else {
    spec.correct_choice = q.correct_choice;
  }
  if (q.points !== undefined) {
    if (!Number.isInteger(q.points) || q.points < 0 || q.points > INT32_MAX)
      add(`${where}.points`, `must be a whole number, got ${kind(q.points)}`);
    else spec.points = q.points;
  }
  if ("time_limit_ms" in q && "time_limit_seconds" in q) {
    add(where, "give either time_limit_ms or time_limit_seconds, not both");
  } else if ("time_limit_seconds" in q) {
    const s = q.time_limit_seconds;
    if (typeof s !== "number" || !(s > 0))
      add(`${where}.time_limit_seconds`, `must be a positive number, got ${kind(s)}`);
    else spec.time_limit_ms = Math.round(s * 1000);
  } else if ("time_limit_ms" in q) {
    const ms = q.time_limit_ms;
    if (!Number.isInteger(ms) || ms <= 0)
      add(`${where}.time_limit_ms`, `must be a positive whole number, got ${kind(ms)}`);
    else spec.time_limit_ms = ms;
  }
  return spec;
}

// --- A YAML subset: what quiz files use ----------------------------------------
// Block mappings and sequences by indentation, `- key: value` items, flow lists
// `[a, "b"]`, quoted and plain scalars, comments. Anything else is refused with
// its line number rather than guessed at.

export function parseYaml(source) {
  const lines = [];
  source.split(/\r?\n/).forEach((raw, i) => {
    if (raw.includes("\t") && /^\s*\t/.test(raw))
      throw new QuizFileError([`line ${i + 1}: indent with spaces, not tabs`]);
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
  throw new QuizFileError([`line ${line.number}: invalid YAML: ${message}`]);
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
  for (const c of text.slice(1, -1)) {
    if (quote) {
      current += c;
      if (c === quote) quote = null;
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
