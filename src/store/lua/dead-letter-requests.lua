--[[
  deadLetterRequests ('q'): which of these seqs have an intent to dead-letter their message.

  This operation guarantees:
    - It writes nothing.
    - The answer names only seqs asked about, each once, whatever the order they were asked in.

    Input:
      KEYS   meta, ids, hist, dead
      ARGV   'q', epoch, n, seq1, ..., seqn

    Output:
      the seqs with an intent (an empty table when none); 0 when the epoch is gone
]]
ops.q = {
  args = function(a) return 3 + tonumber(ARGV[a + 2]) end,
  run = function(k, a)
    if not current(k, ARGV[a + 1]) then return 0 end
    local n = tonumber(ARGV[a + 2])
    local wanted = {}
    for i = a + 3, a + 2 + n do wanted[ARGV[i]] = true end
    -- Intents are few (see 'c'): a scan of the hash is cheaper than a second index.
    local intents = redis.call('HGETALL', k.dead)
    local found = {}
    for i = 1, #intents, 2 do
      local seq = intents[i + 1]
      if wanted[seq] then
        found[#found + 1] = tonumber(seq)
        wanted[seq] = nil
      end
    end
    return found
  end,
}
