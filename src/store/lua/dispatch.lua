--[[
  The dispatcher: runs the batch's operations in order, each under its own pcall.

  This guarantees:
    - One reply per operation, in order; an operation that fails gets an error reply (its
      message) and the others still run.
    - An unknown kind fails the whole call: the caller and the script disagree on the layout,
      and nothing after it could be read right, so nothing after it runs (what ran before it
      stays written, as with any failing script).
]]
local out = {}
local a = 4
local k = 1
while a <= #ARGV do
  local kind = ARGV[a]
  local op = ops[kind]
  if not op then return redis.error_reply('unknown store operation ' .. tostring(kind)) end
  local size = op.args(a)
  local keys = { meta = KEYS[k], ids = KEYS[k + 1], hist = KEYS[k + 2], dead = KEYS[k + 3] }
  local ok, reply = pcall(op.run, keys, a)
  if ok then
    out[#out + 1] = reply
  else
    local message = reply
    if type(reply) == 'table' and reply.err then message = reply.err end
    out[#out + 1] = redis.error_reply(tostring(message))
  end
  k = k + 4
  a = a + size
end
return out
