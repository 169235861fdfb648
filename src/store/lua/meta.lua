--[[
  meta ('m'): reads the user's numbering, starting one when there is none.

  This operation guarantees:
    - A user without a meta hash gets a new epoch at seq 0, acked 0, start 1, with empty ids,
      history and intents (keys left from an older numbering, e.g. by an eviction of the meta
      hash alone, are deleted so they cannot leak into the new epoch).

    Input:
      KEYS   meta, ids, hist, dead
      ARGV   'm', newEpoch (used only when a numbering is started)

    Output:
      {epoch, seq, acked, start}
]]
ops.m = {
  args = function(a) return 2 end,
  run = function(k, a)
    if redis.call('EXISTS', k.meta) == 0 then
      redis.call('DEL', k.ids, k.hist, k.dead)
      redis.call('HSET', k.meta, 'epoch', ARGV[a + 1], 'seq', 0, 'acked', 0, 'start', 1)
    end
    return redis.call('HMGET', k.meta, 'epoch', 'seq', 'acked', 'start')
  end,
}
