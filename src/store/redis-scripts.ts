/**
 * The Lua script of the Redis store. Keys per user (one hash tag each):
 *   <prefix>{<user>}:m  hash  epoch, seq (last handed out), acked (highest acked), start (oldest kept)
 *   <prefix>{<user>}:i  hash  messageId -> seq
 *   <prefix>{<user>}:h  hash  seq -> "<storedAt>\n<messageId>\n<fragment>"
 *
 * The store sends the operations of one event-loop turn, for any number of users, as one call of
 * BATCH (see redis-store.ts). Redis runs a script without interleaving other commands, so each
 * operation sees the state the previous ones left: a batch of seqs is handed out, and history
 * trimmed, as one step. Each operation runs under its own pcall: one that fails (a key of the
 * wrong type, say) gets an error reply of its own and the others go on. What a failing operation
 * wrote before its error stays written, as with any Redis script. Because a batch names many
 * users' keys, the store needs a single Redis server, not Redis Cluster.
 *
 * KEYS: 3 per operation (meta, ids, hist), operation i at KEYS[3i-2..3i].
 * ARGV: now maxCount maxAge, then per operation a kind and its arguments:
 *   'm' newEpoch                                -> {epoch, seq, acked, start}
 *   'a' epoch n id1 fragment1 ... idn fragmentn -> {seq...}, or 0 when the epoch is gone
 *   'k' epoch seq                               -> 1, or 0 when the epoch is gone (raises acked, trims)
 *   'r' epoch from to                           -> {seq, raw, seq, raw...}, or 0 when the epoch is gone
 *   'f'                                         -> 1 (deletes the user's keys)
 * Returns one reply per operation, in order (an error reply for an operation that failed).
 */
export const BATCH = `
local now = tonumber(ARGV[1])
local maxCount = tonumber(ARGV[2])
local maxAge = tonumber(ARGV[3])

local function trim(ids, hist, seq, acked, start)
  local steps = 0
  while start <= acked and steps < 1000 do
    local raw = redis.call('HGET', hist, start)
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
    redis.call('HDEL', hist, start)
    if id then redis.call('HDEL', ids, id) end
    start = start + 1
    steps = steps + 1
  end
  return start
end

local ops = {}

ops.m = function(meta, ids, hist, a)
  if redis.call('EXISTS', meta) == 0 then
    redis.call('HSET', meta, 'epoch', ARGV[a + 1], 'seq', 0, 'acked', 0, 'start', 1)
  end
  return redis.call('HMGET', meta, 'epoch', 'seq', 'acked', 'start')
end

ops.a = function(meta, ids, hist, a)
  local n = tonumber(ARGV[a + 2])
  local m = redis.call('HMGET', meta, 'epoch', 'seq', 'acked', 'start')
  if (not m[1]) or m[1] ~= ARGV[a + 1] then return 0 end
  local seq = tonumber(m[2])
  local seqs = {}
  for i = a + 3, a + 2 + 2 * n, 2 do
    local known = redis.call('HGET', ids, ARGV[i])
    if known then
      seqs[#seqs + 1] = tonumber(known)
    else
      seq = seq + 1
      redis.call('HSET', ids, ARGV[i], seq)
      redis.call('HSET', hist, seq, ARGV[1] .. '\\n' .. ARGV[i] .. '\\n' .. ARGV[i + 1])
      seqs[#seqs + 1] = seq
    end
  end
  local start = trim(ids, hist, seq, tonumber(m[3]), tonumber(m[4]))
  redis.call('HSET', meta, 'seq', seq, 'start', start)
  return seqs
end

ops.k = function(meta, ids, hist, a)
  local m = redis.call('HMGET', meta, 'epoch', 'seq', 'acked', 'start')
  if (not m[1]) or m[1] ~= ARGV[a + 1] then return 0 end
  local seq = tonumber(m[2])
  local acked = tonumber(m[3])
  local wanted = math.min(tonumber(ARGV[a + 2]), seq)
  if wanted > acked then acked = wanted end
  local start = trim(ids, hist, seq, acked, tonumber(m[4]))
  redis.call('HSET', meta, 'acked', acked, 'start', start)
  return 1
end

ops.r = function(meta, ids, hist, a)
  local m = redis.call('HMGET', meta, 'epoch', 'seq', 'start')
  if (not m[1]) or m[1] ~= ARGV[a + 1] then return 0 end
  local from = math.max(tonumber(ARGV[a + 2]), tonumber(m[3]))
  local to = math.min(tonumber(ARGV[a + 3]), tonumber(m[2]))
  local entries = {}
  for s = from, to do
    local raw = redis.call('HGET', hist, s)
    if raw then
      entries[#entries + 1] = s
      entries[#entries + 1] = raw
    end
  end
  return entries
end

ops.f = function(meta, ids, hist, a)
  redis.call('DEL', meta, ids, hist)
  return 1
end

local sizes = { m = 2, k = 3, r = 4, f = 1 }

local out = {}
local a = 4
local k = 1
while a <= #ARGV do
  local kind = ARGV[a]
  local size = sizes[kind]
  if kind == 'a' then size = 3 + 2 * tonumber(ARGV[a + 2]) end
  if not size then return redis.error_reply('unknown store operation ' .. tostring(kind)) end
  local ok, reply = pcall(ops[kind], KEYS[k], KEYS[k + 1], KEYS[k + 2], a)
  if ok then
    out[#out + 1] = reply
  else
    local message = reply
    if type(reply) == 'table' and reply.err then message = reply.err end
    out[#out + 1] = redis.error_reply(tostring(message))
  end
  k = k + 3
  a = a + size
end
return out
`;
