-- wrk script for `benches/load.sh spray`: every request carries a distinct client address in
-- X-Forwarded-For, as if a trusted proxy on 127.0.0.1 forwarded one request per client.
--
-- Addresses come from a per-thread counter: thread t (numbered by setup()) owns the block
-- [t * 4 000 000, (t + 1) * 4 000 000) of 10.0.0.0/8 and walks it one address per request,
-- so up to 4 threads never repeat an address before sending 4 million requests each
-- (a 30 s run sends well under that). The -H headers given to wrk (the bearer token) are
-- kept: wrk.format() sends wrk.headers.

local next_id = 0
local BLOCK = 4000000

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

local counter = 0

function init(args)
  -- `id` was set by setup() in this thread's Lua state before init() runs.
  counter = (tonumber(id) or 0) * BLOCK
end

function request()
  local n = (counter % 16777214) + 1 -- 10.0.0.1 … 10.255.255.254
  counter = counter + 1
  wrk.headers["X-Forwarded-For"] = string.format(
    "10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format()
end
