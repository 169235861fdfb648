--[[
  assign ('a'): numbers a batch of messages, in input order.

  This operation guarantees:
    - Exactly one result per input. An id with a dead-letter intent gets the intent's seq, marked
      (negated), and no new seq; an id still in ids gets its seq again; any other id the next seq,
      with its history entry written. Then history is trimmed.
    - If the store's seq is below `seen` (the caller saw this store hand out more: it went back
      in time), the user's numbering is dropped and nothing is assigned.

    Input:
      KEYS   meta, ids, hist, dead
      ARGV   'a', epoch, seen, n, id1, fragment1, ..., idn, fragmentn

    Output:
      {r1, ..., rn}: ri = seq, or -seq when input i has a dead-letter intent
      0 when the epoch is gone or was just dropped
]]
ops.a = {
  args = function(a) return 4 + 2 * tonumber(ARGV[a + 3]) end,
  run = function(k, a)
    local m = current(k, ARGV[a + 1])
    if not m then return 0 end
    if m.seq < tonumber(ARGV[a + 2]) then
      drop(k)
      return 0
    end
    local n = tonumber(ARGV[a + 3])
    local intents = redis.call('EXISTS', k.dead) == 1
    local seq = m.seq
    local out = {}
    for i = a + 4, a + 3 + 2 * n, 2 do
      local intent = intents and redis.call('HGET', k.dead, ARGV[i])
      if intent then
        out[#out + 1] = -tonumber(intent)
      else
        local known = redis.call('HGET', k.ids, ARGV[i])
        if known then
          out[#out + 1] = tonumber(known)
        else
          seq = seq + 1
          redis.call('HSET', k.ids, ARGV[i], seq)
          redis.call('HSET', k.hist, seq, ARGV[1] .. '\n' .. ARGV[i] .. '\n' .. ARGV[i + 1])
          out[#out + 1] = seq
        end
      end
    end
    local start = trim(k, seq, m.acked, m.start)
    redis.call('HSET', k.meta, 'seq', seq, 'start', start)
    return out
  end,
}
