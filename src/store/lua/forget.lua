--[[
  forget ('f'): deletes the user's state, whatever its epoch (operator use and tests).

    Input:
      KEYS   meta, ids, hist, dead
      ARGV   'f'

    Output:
      1
]]
ops.f = {
  args = function(a) return 1 end,
  run = function(k, a)
    drop(k)
    return 1
  end,
}
