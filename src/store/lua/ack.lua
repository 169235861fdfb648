--[[
  ack ('k'): raises the acked mark and trims history.

  This operation guarantees:
    - The acked mark never goes down.
    - An ack above the store's seq (a client acked a seq this store does not know it handed out:
      it went back in time) drops the user's numbering instead; nothing is clamped.
    - Dead-letter intents are kept, whatever the mark passes.

    Input:
      KEYS   meta, ids, hist, dead
      ARGV   'k', epoch, seq

    Output:
      1; 0 when the epoch is gone or was just dropped
]]
ops.k = {
  args = function(a) return 3 end,
  run = function(k, a)
    local wanted = tonumber(ARGV[a + 2])
    local m = currentUpTo(k, ARGV[a + 1], wanted)
    if not m then return 0 end
    local acked = math.max(m.acked, wanted)
    local start = trim(k, m.seq, acked, m.start)
    redis.call('HSET', k.meta, 'acked', acked, 'start', start)
    return 1
  end,
}
