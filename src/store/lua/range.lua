--[[
  range ('r'): reads the history entries kept in [from, to].

  This operation guarantees:
    - Entries come in seq order; trimmed seqs are left out.
    - A range past the store's seq (the caller saw this store hand out more: it went back in
      time) drops the user's numbering instead.

    Input:
      KEYS   meta, ids, hist, dead
      ARGV   'r', epoch, from, to

    Output:
      {seq1, raw1, seq2, raw2, ...}: raw as stored in hist
      0 when the epoch is gone or was just dropped
]]
ops.r = {
  args = function(a) return 4 end,
  run = function(k, a)
    local to = tonumber(ARGV[a + 3])
    local m = currentUpTo(k, ARGV[a + 1], to)
    if not m then return 0 end
    local entries = {}
    for s = math.max(tonumber(ARGV[a + 2]), m.start), to do
      local raw = redis.call('HGET', k.hist, s)
      if raw then
        entries[#entries + 1] = s
        entries[#entries + 1] = raw
      end
    end
    return entries
  end,
}
