-- Judges and applies one answer atomically: the first answer of a player to the
-- open question, before its deadline, scores once; a retry returns the original.
-- KEYS: state, questions, answers, board (one quiz: same hash tag)
-- ARGV: player_id, question_index, choice_index, now_ms, SCALE
local state, questions, answers, board = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local player, qidx, choice, now, scale =
  ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

-- The state hash is written last when a quiz's live state is rebuilt, so without
-- it nothing else of the quiz is trusted.
local st = redis.call('HMGET', state, 'status', 'question', 'opened_at', 'deadline', 'epoch')
local status, current = st[1], tonumber(st[2])
if not status then return {'error', 'no_quiz'} end

local field = ARGV[2] .. ':' .. player
local prior = redis.call('HGET', answers, field)
local packed = redis.call('ZSCORE', board, player)
-- Totals travel as integers: Lua's tostring() would round a packed double.
if prior then
  return {'replay', prior, packed and math.ceil(tonumber(packed) / scale) or 0}
end
if not packed then return {'error', 'no_player'} end
if status == 'OPEN' then return {'error', 'not_started'} end
if status == 'CLOSED' then return {'error', 'closed'} end
if qidx > current then return {'error', 'not_open', tostring(current)} end
if qidx < current then return {'error', 'moved_on', tostring(current)} end
local deadline = tonumber(st[4])
if now > deadline then return {'error', 'late', tostring(now - deadline)} end

local spec = redis.call('HGET', questions, ARGV[2])
local correct, points, limit, nchoices = string.match(spec, '(%d+)|(%d+)|(%d+)|(%d+)')
correct, points, limit, nchoices = tonumber(correct), tonumber(points), tonumber(limit), tonumber(nchoices)
if choice >= nchoices then return {'error', 'bad_choice', tostring(nchoices)} end

local total = math.ceil(tonumber(packed) / scale)
local awarded = 0
if choice == correct then
  -- Kahoot-style: full points at once, half at the deadline; round half up.
  local elapsed = math.max(0, now - tonumber(st[3]))
  awarded = math.floor(points * (1 - elapsed / (2 * limit)) + 0.5)
end
local record = choice .. '|' .. (choice == correct and 1 or 0) .. '|' .. awarded .. '|' .. now
redis.call('HSET', answers, field, record)
redis.call('HINCRBY', state, 'answers:' .. ARGV[2], 1)
-- Every accepted answer changes what watchers see (at least the answer count).
redis.call('HINCRBY', state, 'version', 1)
if awarded > 0 then
  -- packed = points * SCALE - ms since the quiz was created (earlier ranks higher)
  total = total + awarded
  redis.call('ZADD', board, total * scale - (now - tonumber(st[5])), player)
  redis.call('HSET', state, 'changed_at', now)
end
return {'accepted', record, total}
