--[[
  deadLettered ('c'): clears the intents of seqs whose messages were rejected.

  This operation guarantees:
    - Only intents naming one of these seqs are cleared; unknown seqs are ignored.
    - Nothing happens when the epoch is gone.

    Input:
      KEYS   meta, ids, hist, dead
      ARGV   'c', epoch, n, seq1, ..., seqn

    Output:
      the number of intents cleared; 0 also when the epoch is gone
]]
ops.c = {
  args = function(a) return 3 + tonumber(ARGV[a + 2]) end,
  run = function(k, a)
    if not current(k, ARGV[a + 1]) then return 0 end
    local n = tonumber(ARGV[a + 2])
    local wanted = {}
    for i = a + 3, a + 2 + n do wanted[ARGV[i]] = true end
    -- Intents are few (messages a client refused while the relay could not reject them), so a
    -- scan of the hash is cheaper than keeping a second, seq -> id, index in step.
    local intents = redis.call('HGETALL', k.dead)
    local cleared = 0
    for i = 1, #intents, 2 do
      if wanted[intents[i + 1]] then
        redis.call('HDEL', k.dead, intents[i])
        cleared = cleared + 1
      end
    end
    return cleared
  end,
}
