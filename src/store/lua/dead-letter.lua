--[[
  deadLetter ('d'): records the intent to dead-letter the message numbered seq.

  This operation guarantees:
    - The intent is kept by message id (from the seq's history entry) in the dead hash, which
      acks and history trimming never touch: when RabbitMQ delivers that message again, assign
      answers it as an intent, however far the acked mark went meanwhile.
    - Recording an intent twice is the same as once.
    - A seq past the store's seq (it went back in time) drops the user's numbering instead.

    Input:
      KEYS   meta, ids, hist, dead
      ARGV   'd', epoch, seq

    Output:
      1 recorded; -1 history no longer holds seq (nothing to dead-letter)
      0 when the epoch is gone or was just dropped
]]
ops.d = {
  args = function(a) return 3 end,
  run = function(k, a)
    local seq = tonumber(ARGV[a + 2])
    local m = currentUpTo(k, ARGV[a + 1], seq)
    if not m then return 0 end
    if seq < m.start then return -1 end
    local raw = redis.call('HGET', k.hist, seq)
    local id = raw and entryId(raw)
    if not id then return -1 end
    redis.call('HSET', k.dead, id, seq)
    return 1
  end,
}
