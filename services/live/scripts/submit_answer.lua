-- Judges and applies one answer atomically: the first answer of a player to the
-- open question, before its deadline, scores once; a retry returns the original.
-- Unless the quiz has instant feedback, the new total waits in `pending` until
-- the question closes (reveal.lua), so the board does not move while it is open.
-- KEYS: state, questions, answers, board, pending, changed (one quiz: same hash tag)
-- ARGV: player_id, question_index, choice_index, now_ms, SCALE
-- Returns {'accepted' | 'replay', record, shown total, told (1/0), running total}
-- or {'error', reason[, detail]}.
local state, questions, answers, board, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local changed = KEYS[6]
local player, qidx, choice, now, scale =
  ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

-- The state hash is written last when a quiz's live state is rebuilt, so without
-- it nothing else of the quiz is trusted.
local st = redis.call('HMGET', state, 'status', 'question', 'opened_at', 'deadline', 'epoch',
  'instant_feedback')
local status, current = st[1], tonumber(st[2])
if not status then return {'error', 'no_quiz'} end
local instant = st[6] == '1'
local deadline = tonumber(st[4])

-- Totals travel as integers: Lua's tostring() would round a packed double.
local function points(packed) return packed and math.ceil(tonumber(packed) / scale) or 0 end

local field = ARGV[2] .. ':' .. player
local prior = redis.call('HGET', answers, field)
local packed = redis.call('ZSCORE', board, player)
local waiting = (not instant) and redis.call('ZSCORE', pending, player) or false
local shown, running = points(packed), points(waiting or packed)
if prior then
  -- Told once its question no longer takes answers (layout.withheld_question).
  local told = instant or status ~= 'RUNNING' or qidx ~= current or now > deadline
  if told then shown = running end
  return {'replay', prior, shown, told and 1 or 0, running}
end
if not packed then return {'error', 'no_player'} end
if status == 'OPEN' then return {'error', 'not_started'} end
if status == 'CLOSED' then return {'error', 'closed'} end
if qidx > current then return {'error', 'not_open', tostring(current)} end
if qidx < current then return {'error', 'moved_on', tostring(current)} end
if now > deadline then return {'error', 'late', tostring(now - deadline)} end

local spec = redis.call('HGET', questions, ARGV[2])
local correct, worth, limit, nchoices = string.match(spec, '(%d+)|(%d+)|(%d+)|(%d+)')
correct, worth, limit, nchoices = tonumber(correct), tonumber(worth), tonumber(limit), tonumber(nchoices)
if choice >= nchoices then return {'error', 'bad_choice', tostring(nchoices)} end

local awarded = 0
if choice == correct then
  -- Kahoot-style: full points at once, half at the deadline; round half up.
  local elapsed = math.max(0, now - tonumber(st[3]))
  awarded = math.floor(worth * (1 - elapsed / (2 * limit)) + 0.5)
end
local record = choice .. '|' .. (choice == correct and 1 or 0) .. '|' .. awarded .. '|' .. now
redis.call('HSET', answers, field, record)
redis.call('HINCRBY', state, 'answers:' .. ARGV[2], 1)
-- The answer distribution, told when the question closes (layout.choice_count_field).
redis.call('HINCRBY', state, 'choices:' .. ARGV[2] .. ':' .. choice, 1)
-- Every accepted answer changes what watchers see (at least the answer count).
redis.call('HINCRBY', state, 'version', 1)
if awarded > 0 then
  -- packed = points * SCALE - ms since the quiz was created (earlier ranks higher)
  running = running + awarded
  local value = running * scale - (now - tonumber(st[5]))
  if instant then
    redis.call('ZADD', board, value, player)
    redis.call('SADD', changed, player)
    redis.call('HSET', state, 'changed_at', now)
  else
    redis.call('ZADD', pending, value, player)
  end
end
if instant then shown = running end
return {'accepted', record, shown, instant and 1 or 0, running}
