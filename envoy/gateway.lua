-- The gateway's Lua filter (envoy/envoy.yaml.tmpl), between the buffer filter and the
-- transcoder. devstack/gateway.py renders it into the config, with BODIES generated
-- from the contract.
--
-- On the way in: a JSON body that names a field its message does not have is refused
-- with 400 naming it (the transcoder would drop it silently, and a misspelt
-- "choice" would be read as choice_index 0); and the rate limits after the
-- transcoder get their keys (dynamic metadata under "quizmesh", which no client can
-- send): `anonymous` on a request without a verified token, `quiz` on a join.
-- Nothing on the way out: SSE frames come from the stream service whole, `id:`
-- included (services/stream/frames.py).

-- REST POST routes: { Lua pattern of the path, the body's message, its fields }. A
-- field maps to true, or to the fields of the message it holds (objects, or arrays
-- of them). Both the proto name and the JSON (lowerCamelCase) name are listed.
local BODIES = {} -- generated

local function skip_space(s, i)
  return string.find(s, "[^ \t\r\n]", i) or (#s + 1)
end

-- The string at s[i] == '"' (escapes decoded enough to compare field names) and the
-- index after it; nil when malformed.
local function read_string(s, i)
  local parts, j = {}, i + 1
  while true do
    local k = string.find(s, '["\\]', j)
    if k == nil then return nil end
    parts[#parts + 1] = string.sub(s, j, k - 1)
    if string.sub(s, k, k) == '"' then return table.concat(parts), k + 1 end
    local escaped = string.sub(s, k + 1, k + 1)
    if escaped == "u" then
      local code = tonumber(string.sub(s, k + 2, k + 5), 16)
      if code == nil then return nil end
      parts[#parts + 1] = code < 128 and string.char(code) or "?"
      j = k + 6
    else
      parts[#parts + 1] = escaped
      j = k + 2
    end
  end
end

local check_value

-- The object at s[i] == '{' against `fields` (nil: not checked); the first unknown
-- field's path goes to bad[1]. Returns the index after the object, nil if malformed.
local function check_object(s, i, fields, where, bad)
  i = skip_space(s, i + 1)
  if string.sub(s, i, i) == "}" then return i + 1 end
  while true do
    if string.sub(s, i, i) ~= '"' then return nil end
    local key
    key, i = read_string(s, i)
    if key == nil then return nil end
    i = skip_space(s, i)
    if string.sub(s, i, i) ~= ":" then return nil end
    i = skip_space(s, i + 1)
    local name = where == "" and key or (where .. "." .. key)
    local inner = fields and fields[key]
    if fields ~= nil and inner == nil and bad[1] == nil then bad[1] = name end
    i = check_value(s, i, type(inner) == "table" and inner or nil, name, bad)
    if i == nil then return nil end
    i = skip_space(s, i)
    local c = string.sub(s, i, i)
    if c == "}" then return i + 1 end
    if c ~= "," then return nil end
    i = skip_space(s, i + 1)
  end
end

check_value = function(s, i, fields, where, bad)
  local c = string.sub(s, i, i)
  if c == "{" then return check_object(s, i, fields, where, bad) end
  if c == '"' then
    local _, after = read_string(s, i)
    return after
  end
  if c == "[" then
    i = skip_space(s, i + 1)
    if string.sub(s, i, i) == "]" then return i + 1 end
    local n = 0
    while true do
      i = check_value(s, i, fields, where .. "[" .. n .. "]", bad)
      if i == nil then return nil end
      i = skip_space(s, i)
      local d = string.sub(s, i, i)
      if d == "]" then return i + 1 end
      if d ~= "," then return nil end
      i = skip_space(s, i + 1)
      n = n + 1
    end
  end
  local after = string.find(s, "[,}%] \t\r\n]", i) -- a number, true, false or null
  if after == i then return nil end
  return after or (#s + 1)
end

-- --- rate limit keys ------------------------------------------------------------

local JOIN_REST = "^/v1/quizzes/([^/]+):join$"
local JOIN_GRPC = "/quizmesh.quiz.v1.QuizService/JoinQuiz"

-- The varint at s[i] and the index after it; nil when cut short or too long.
local function varint(s, i)
  local value, scale = 0, 1
  while i <= #s and scale <= 2 ^ 49 do
    local byte = string.byte(s, i)
    value = value + (byte % 128) * scale
    if byte < 128 then return value, i + 1 end
    scale = scale * 128
    i = i + 1
  end
  return nil
end

-- Field 1 (JoinQuizRequest.quiz_id) of an uncompressed gRPC request body: the last
-- occurrence wins, as in every protobuf parser. nil when there is none to read.
local function grpc_quiz_id(body)
  if #body < 5 or string.byte(body, 1) ~= 0 then return nil end
  local size = ((string.byte(body, 2) * 256 + string.byte(body, 3)) * 256
    + string.byte(body, 4)) * 256 + string.byte(body, 5)
  local last, i, found = math.min(#body, 5 + size), 6, nil
  while i <= last do
    local key
    key, i = varint(body, i)
    if key == nil then return found end
    local field, wire = math.floor(key / 8), key % 8
    if wire == 0 then
      local _
      _, i = varint(body, i)
    elseif wire == 1 then
      i = i + 8
    elseif wire == 5 then
      i = i + 4
    elseif wire == 2 then
      local n
      n, i = varint(body, i)
      if n == nil then return found end
      if field == 1 then found = string.sub(body, i, i + n - 1) end
      i = i + n
    else
      return found
    end
    if i == nil then return found end
  end
  return found
end

-- A quiz code as the quiz service reads it (services/ids.py: trimmed, upper case),
-- so that no spelling of one quiz gets a bucket of its own.
local function quiz_code(raw)
  local decoded = string.gsub(raw, "%%(%x%x)", function(hex)
    return string.char(tonumber(hex, 16))
  end)
  local trimmed = string.match(decoded, "^%s*(.-)%s*$")
  return string.upper(trimmed)
end

local function mark_for_rate_limits(handle, headers, path)
  local metadata = handle:streamInfo():dynamicMetadata()
  local jwt = metadata:get("envoy.filters.http.jwt_authn")
  local payload = jwt and jwt["jwt_payload"]
  if payload == nil or payload["sub"] == nil then
    metadata:set("quizmesh", "anonymous", "true")
  end
  if headers:get(":method") ~= "POST" then return end
  local quiz = string.match(path, JOIN_REST)
  if quiz == nil and path == JOIN_GRPC then
    local body = handle:body() -- already whole: the buffer filter before this one
    if body ~= nil and body:length() > 0 then
      quiz = grpc_quiz_id(body:getBytes(0, body:length()))
    end
  end
  if quiz == nil then return end
  -- Asked anew: a wrapper taken before body() yielded writes nothing after it.
  handle:streamInfo():dynamicMetadata():set("quizmesh", "quiz", quiz_code(quiz))
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local path = string.match(headers:get(":path") or "", "^[^?]*")
  mark_for_rate_limits(handle, headers, path)
  if headers:get(":method") ~= "POST" then return end
  local route
  for _, candidate in ipairs(BODIES) do
    if string.match(path, candidate[1]) then
      route = candidate
      break
    end
  end
  if route == nil then return end
  local body = handle:body() -- already whole: the buffer filter before this one
  if body == nil or body:length() == 0 then return end
  local text = body:getBytes(0, body:length())
  local start = skip_space(text, 1)
  if string.sub(text, start, start) ~= "{" then return end
  local bad = {}
  -- Malformed JSON is left to the transcoder, which says what is wrong with it.
  if check_object(text, start, route[3], "", bad) == nil or bad[1] == nil then return end
  handle:respond(
    { [":status"] = "400", ["x-quizmesh-bad-field"] = bad[1] },
    bad[1] .. " is no field of " .. route[2] .. " (a misspelt name?)"
  )
end
