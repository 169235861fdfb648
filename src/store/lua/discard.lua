--[[
  discard ('x'): drops the user's numbering if it is still the named epoch.

  This operation guarantees:
    - A caller that found the store behind what it saw (a client resuming past the head, say)
      ends that epoch; a newer epoch, started meanwhile by another node, is left alone.
    - Idempotent.

    Input:
      KEYS   meta, ids, hist, dead
      ARGV   'x', epoch

    Output:
      1 when it dropped the numbering, 0 when the epoch was already gone
]]
ops.x = {
  args = function(a) return 2 end,
  run = function(k, a)
    if not current(k, ARGV[a + 1]) then return 0 end
    drop(k)
    return 1
  end,
}
