--[[
  The presence script, PRESENCE: who is connected, on which node, since when (presence-store.ts).
  One call runs one request: `apply` (a batch of puts and removes), `sweep` or `read`.

  Keys, derived here from the key prefix (ARGV[2]) so that the sweep can reach any user's:
    <prefix>presence           zset  user -> earliest expiry of the user's entries: the users
                                     online now (membership is what "online" means)
    <prefix>{<user>}:pc        hash  connection -> entry JSON {node, since, device?}
    <prefix>{<user>}:pe        zset  connection -> expiry (ms)
    <prefix>{<user>}:pl        string  lastSeen (ms), set when the user went offline
  Because one call names many users' keys, it needs a single Redis server (or a Sentinel-named
  primary), not Redis Cluster: the state store's script needs the same.

  This script guarantees:
    - Time is Redis's own (TIME): nodes whose clocks disagree still agree on what expired.
    - An entry whose expiry passed counts for nothing: every request drops a user's expired
      entries before it reads or changes them.
    - A user moves between online and offline only here, atomically, and each move is reported
      to exactly one caller: the one whose request made it. A put to a user whose entries had
      all expired reports the offline move, then the online one.
    - An offline user has no entry keys and is not in the index; its lastSeen is kept for
      ARGV[4] ms. Entry keys also carry a Redis TTL past their last expiry, so that a deployment
      whose every node is gone leaves nothing behind; the index still names such a user until a
      sweep reports it offline.

  Input:
    KEYS[1]   the index (<prefix>presence)
    ARGV[1]   the request: 'apply', 'sweep' or 'read'
    ARGV[2]   the key prefix
    apply:    ARGV[3] entry TTL (ms), ARGV[4] lastSeen TTL (ms), then per operation
              'p' <user> <connection> <entry JSON>  (put: add or refresh)
              'r' <user> <connection>               (remove)
    sweep:    ARGV[3] most users to look at, ARGV[4] lastSeen TTL (ms)
    read:     ARGV[3..] users

  Output:
    apply, sweep: { now, moves } with moves a flat list of (user, 1 online | 0 offline, count)
    read:     { now, per user { lastSeen or false, connection, entry, expiry, ... } }
]]
local index = KEYS[1]
local request = ARGV[1]
local prefix = ARGV[2]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local function keysOf(user)
  local base = prefix .. '{' .. user .. '}'
  return { conns = base .. ':pc', expiry = base .. ':pe', seen = base .. ':pl' }
end

-- Drops the user's entries whose expiry is not after now.
local function purge(k)
  local expired = redis.call('ZRANGEBYSCORE', k.expiry, '-inf', now)
  if #expired == 0 then return end
  redis.call('HDEL', k.conns, unpack(expired))
  redis.call('ZREMRANGEBYSCORE', k.expiry, '-inf', now)
end

-- Brings the index and the keys' TTLs in line with the user's entries; appends the move, if
-- the user's online state changed, to `moves`.
local function settle(user, k, seenTtl, moves)
  local was = redis.call('ZSCORE', index, user)
  local first = redis.call('ZRANGE', k.expiry, 0, 0, 'WITHSCORES')
  if #first == 0 then
    redis.call('ZREM', index, user)
    redis.call('DEL', k.conns, k.expiry)
    if was then
      redis.call('SET', k.seen, now, 'PX', seenTtl)
      moves[#moves + 1] = user
      moves[#moves + 1] = 0
      moves[#moves + 1] = 0
    end
    return
  end
  redis.call('ZADD', index, first[2], user)
  local last = redis.call('ZRANGE', k.expiry, -1, -1, 'WITHSCORES')
  -- Past the last expiry by as long again: a sweep normally gets there first.
  local keepUntil = 2 * tonumber(last[2]) - now
  redis.call('PEXPIREAT', k.conns, keepUntil)
  redis.call('PEXPIREAT', k.expiry, keepUntil)
  if not was then
    moves[#moves + 1] = user
    moves[#moves + 1] = 1
    moves[#moves + 1] = redis.call('ZCARD', k.expiry)
  end
end

if request == 'apply' then
  local ttl = tonumber(ARGV[3])
  local seenTtl = tonumber(ARGV[4])
  local moves = {}
  local a = 5
  while a <= #ARGV do
    local kind, user, connection = ARGV[a], ARGV[a + 1], ARGV[a + 2]
    local k = keysOf(user)
    purge(k)
    -- A user left with no entry (all expired, or their keys gone) may still be in the index:
    -- report that offline move before this operation's own.
    if redis.call('EXISTS', k.expiry) == 0 then settle(user, k, seenTtl, moves) end
    if kind == 'p' then
      redis.call('HSET', k.conns, connection, ARGV[a + 3])
      redis.call('ZADD', k.expiry, now + ttl, connection)
      a = a + 4
    elseif kind == 'r' then
      redis.call('HDEL', k.conns, connection)
      redis.call('ZREM', k.expiry, connection)
      a = a + 3
    else
      return redis.error_reply('unknown presence operation ' .. tostring(kind))
    end
    settle(user, k, seenTtl, moves)
  end
  return { now, moves }
end

if request == 'sweep' then
  local limit = tonumber(ARGV[3])
  local seenTtl = tonumber(ARGV[4])
  local moves = {}
  local due = redis.call('ZRANGEBYSCORE', index, '-inf', now, 'LIMIT', 0, limit)
  for _, user in ipairs(due) do
    local k = keysOf(user)
    purge(k)
    settle(user, k, seenTtl, moves)
  end
  return { now, moves }
end

if request == 'read' then
  local out = {}
  for i = 3, #ARGV do
    local k = keysOf(ARGV[i])
    local row = { redis.call('GET', k.seen) }
    local live = redis.call('ZRANGEBYSCORE', k.expiry, '(' .. now, '+inf', 'WITHSCORES')
    for j = 1, #live, 2 do
      local entry = redis.call('HGET', k.conns, live[j])
      if entry then
        row[#row + 1] = live[j]
        row[#row + 1] = entry
        row[#row + 1] = live[j + 1]
      end
    end
    out[#out + 1] = row
  end
  return { now, out }
end

return redis.error_reply('unknown presence request ' .. tostring(request))
