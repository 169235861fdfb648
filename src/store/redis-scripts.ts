/**
 * Lua scripts of the Redis store. Each runs atomically, so a batch of seqs is handed out, and
 * history trimmed, as one step. Keys per user (one hash tag, so they share a cluster slot):
 *   <prefix>{<user>}:m  hash  epoch, seq (last handed out), acked (highest acked), start (oldest kept)
 *   <prefix>{<user>}:i  hash  messageId -> seq
 *   <prefix>{<user>}:h  hash  seq -> "<storedAt>\n<messageId>\n<fragment>"
 */
const TRIM = `
local function trim(seq, acked, start, now, maxCount, maxAge)
  local steps = 0
  while start <= acked and steps < 1000 do
    local raw = redis.call('HGET', KEYS[3], start)
    local drop = (seq - start + 1) > maxCount
    local id = nil
    if raw then
      local t, i = string.match(raw, '^(%d+)\\n([^\\n]*)\\n')
      id = i
      if (not drop) and t and tonumber(t) < now - maxAge then drop = true end
    else
      drop = true
    end
    if not drop then break end
    redis.call('HDEL', KEYS[3], start)
    if id then redis.call('HDEL', KEYS[2], id) end
    start = start + 1
    steps = steps + 1
  end
  return start
end
`;

/** KEYS meta ids hist; ARGV epoch now maxCount maxAge [id fragment]... -> {seq...}, or 0 when the epoch is gone */
export const ASSIGN = `${TRIM}
local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'acked', 'start')
if (not m[1]) or m[1] ~= ARGV[1] then return 0 end
local seq = tonumber(m[2])
local start = tonumber(m[4])
local out = {}
for i = 5, #ARGV, 2 do
  local known = redis.call('HGET', KEYS[2], ARGV[i])
  if known then
    out[#out + 1] = tonumber(known)
  else
    seq = seq + 1
    redis.call('HSET', KEYS[2], ARGV[i], seq)
    redis.call('HSET', KEYS[3], seq, ARGV[2] .. '\\n' .. ARGV[i] .. '\\n' .. ARGV[i + 1])
    out[#out + 1] = seq
  end
end
local newStart = trim(seq, tonumber(m[3]), start, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'seq', seq, 'start', newStart)
return out
`;

/** KEYS meta ids hist; ARGV epoch seq now maxCount maxAge -> 1, or 0 when the epoch is gone */
export const ACK = `${TRIM}
local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'acked', 'start')
if (not m[1]) or m[1] ~= ARGV[1] then return 0 end
local seq = tonumber(m[2])
local acked = tonumber(m[3])
local wanted = math.min(tonumber(ARGV[2]), seq)
if wanted > acked then acked = wanted end
local newStart = trim(seq, acked, tonumber(m[4]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
redis.call('HSET', KEYS[1], 'acked', acked, 'start', newStart)
return 1
`;

/** KEYS meta; ARGV newEpoch -> {epoch, seq, acked, start} */
export const META = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'seq', 0, 'acked', 0, 'start', 1)
end
return redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'acked', 'start')
`;

/** KEYS meta hist; ARGV epoch from to -> {seq, raw, seq, raw...}, or 0 when the epoch is gone */
export const RANGE = `
local m = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'start')
if (not m[1]) or m[1] ~= ARGV[1] then return 0 end
local from = math.max(tonumber(ARGV[2]), tonumber(m[3]))
local to = math.min(tonumber(ARGV[3]), tonumber(m[2]))
local out = {}
for s = from, to do
  local raw = redis.call('HGET', KEYS[2], s)
  if raw then
    out[#out + 1] = s
    out[#out + 1] = raw
  end
end
return out
`;
