-- The version order of salecast's states, prepended to every script that compares versions
-- (`service.state.scripts` joins the files; Lua scripts cannot import one another).
--
-- A version is (event ts, event id): the time compares as a number, ties by the event id
-- compared bytewise (Lua's < on strings follows the server's locale, which must not decide
-- which event wins).

local function strcmp(a, b)
  if a == b then return 0 end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      if x < y then return -1 else return 1 end
    end
  end
  if #a < #b then return -1 else return 1 end
end

local function cmp(ts, eid, cts, ceid)
  if ts < cts then return -1 elseif ts > cts then return 1 end
  return strcmp(eid, ceid)
end

-- (ts text, event id) of a behaviour-sequence entry "ts␟action␟category␟item␟event id";
-- entries written before event ids were kept have no fifth field and read as id ''.
local function entry_version(entry)
  local ts, rest = string.match(entry, '^([^\31]*)\31(.*)$')
  if not ts then return entry, '' end
  local eid = string.match(rest, '^[^\31]*\31[^\31]*\31[^\31]*\31(.*)$')
  return ts, eid or ''
end
