--[[
  The Redis store's script, BATCH: runs a batch of store operations, for any number of users,
  in one call (see redis-store.ts). The build (scripts/build-lua.mjs) joins this prelude, one
  file per operation and dispatch.lua, in that order, into scripts.generated.ts.

  This script guarantees:
    - Redis runs it without interleaving other commands, so each operation sees the state the
      previous ones left: a batch of seqs is handed out, and history trimmed, as one step.
    - Each operation runs under its own pcall: one that fails (a key of the wrong type, say)
      gets an error reply of its own and the others go on. What a failing operation wrote before
      its error stays written, as with any Redis script.
    - Because a batch names many users' keys, it needs a single Redis server, not Redis Cluster.

  Keys, four per operation, all of one user (one hash tag):
    <prefix>{<user>}:m  hash  epoch, seq (last handed out), acked (highest acked), start (oldest kept)
    <prefix>{<user>}:i  hash  messageId -> seq
    <prefix>{<user>}:h  hash  seq -> "<storedAt>\n<messageId>\n<fragment>"
    <prefix>{<user>}:d  hash  messageId -> seq: dead-letter intents (never trimmed)

    Input:
      KEYS[4i-3..4i]  operation i's meta, ids, hist and dead keys
      ARGV[1]         now (ms)
      ARGV[2]         maxCount: history kept at or below acked, by count
      ARGV[3]         maxAge (ms): history kept at or below acked, by age
      ARGV[4..]       per operation, its kind (one letter) and its arguments (see each operation)

    Output:
      one reply per operation, in order; an error reply for an operation that failed.
]]
local now = tonumber(ARGV[1])
local maxCount = tonumber(ARGV[2])
local maxAge = tonumber(ARGV[3])

-- The operations, by kind: args(a) is how many ARGV the operation takes from ARGV[a] (its kind)
-- on; run(k, a) does it with k = {meta, ids, hist, dead} its keys.
local ops = {}

-- The user's numbering if `epoch` is its current one, else nil.
local function current(k, epoch)
  local m = redis.call('HMGET', k.meta, 'epoch', 'seq', 'acked', 'start')
  if (not m[1]) or m[1] ~= epoch then return nil end
  return { seq = tonumber(m[2]), acked = tonumber(m[3]), start = tonumber(m[4]) }
end

-- Drops the user's numbering, intents included: the next meta starts a new epoch.
local function drop(k)
  redis.call('DEL', k.meta, k.ids, k.hist, k.dead)
end

-- The user's numbering if `epoch` is its current one and it handed out `seq`, else nil. A seq
-- past its head means the store lost writes (a caller saw it handed out): the numbering is
-- dropped, so that the next meta starts a new epoch.
local function currentUpTo(k, epoch, seq)
  local m = current(k, epoch)
  if m and seq > m.seq then
    drop(k)
    return nil
  end
  return m
end

-- The message id of a stored history entry.
local function entryId(raw)
  return string.match(raw, '^%d+\n([^\n]*)\n')
end

-- Trims history at or below acked, oldest first, by count and by age (at most 1000 entries a
-- call, so one call never runs long); returns the new start. Intents are not touched.
local function trim(k, seq, acked, start)
  local steps = 0
  while start <= acked and steps < 1000 do
    local raw = redis.call('HGET', k.hist, start)
    local expired = (seq - start + 1) > maxCount
    local id = nil
    if raw then
      local t, i = string.match(raw, '^(%d+)\n([^\n]*)\n')
      id = i
      if (not expired) and t and tonumber(t) < now - maxAge then expired = true end
    else
      expired = true
    end
    if not expired then break end
    redis.call('HDEL', k.hist, start)
    if id then redis.call('HDEL', k.ids, id) end
    start = start + 1
    steps = steps + 1
  end
  return start
end
