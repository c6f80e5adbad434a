-- What a hostile jail's frames may cost the host (issue 11, item 3): the
-- frame size (max_frame), the values one frame may create (max_values), and
-- decoding in slices that let the loop run and stop at the call's deadline.
-- The jail is spec/fixtures/inmates/bomb: it writes frames that are valid but
-- costly, once or forever. The figures worth reading are printed; asserts
-- on time and memory leave room for a loaded machine.
local helper = require "helper"
local lockup = require "lockup"
local core = require "lockup.core"

local now = core.monotime
local fmt = string.format

local BOMB = "spec/fixtures/inmates/bomb"
local MiB = 1024 * 1024

local owner, before

-- The error a call raised: asserts it raised an inmate error of `kind`.
local function call_fails(kind, jail, ...)
  local ok, e = pcall(jail.call, jail, ...)
  assert.is_false(ok, "expected an error of kind " .. kind .. ", the call returned")
  assert.equal("lockup.inmate.error", (getmetatable(e) or {}).__name, tostring(e))
  assert.equal(kind, e.kind, tostring(e))
  return e
end

-- This process's resident memory now, in MB.
local function rss()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) / 1024 end
  end
  error("no VmRSS in /proc/self/status")
end

-- Runs call(jail) while another task of the same loop ticks every 50 ms,
-- noting the host's resident memory and how late each tick was. `call` gets
-- a function that tells when the jail began (its "flooding" on stderr).
-- Returns the call's error, the seconds from the jail's start to the call's
-- end, the longest gap between ticks and the most RSS above the start.
local function watched(opts, call)
  local began
  opts.dir = BOMB
  opts.on_output = function(chunk)
    if not began and chunk:find("flooding", 1, true) then began = now() end
  end
  local jail = lockup.inmate(opts)
  collectgarbage()
  local base, peak, gap, done, err, ended = rss(), 0, 0, false, nil, nil
  lockup.run(function()
    err = select(2, pcall(call, jail))
    ended, done = now(), true
  end, function()
    local last = now()
    while not done do
      lockup.sleep(0.05)
      local t = now()
      if t - last > gap then gap = t - last end
      last = t
      peak = math.max(peak, rss() - base)
    end
  end)
  assert(began, "the jail never began flooding: " .. tostring(err))
  return err, ended - began, gap, peak
end

setup(function()
  owner = helper.owner()
  before = {}
  for _, id in ipairs(helper.boxes(owner)) do before[id] = true end
end)

after_each(function()
  local left = {}
  for _, id in ipairs(helper.boxes(owner)) do
    if not before[id] then left[#left + 1] = id end
  end
  assert.same({}, left, "containers left behind by this test")
end)

describe("lockup.inmate limits", function()
  local jail
  setup(function() jail = lockup.inmate { dir = BOMB } end)

  it("max_frame: a frame over it (4 MiB by default) is refused as it begins, naming the option", function()
    local e = call_fails("protocol", jail, "string", 5 * MiB)
    assert.matches("larger than 4194304 bytes, the jail's max_frame", e.message, 1, true)
    assert.matches("lockup.inmate{ max_frame = bytes }", e.message, 1, true)
    -- raised for a jail whose answers are that big, the same call returns
    local big = lockup.inmate { dir = BOMB, max_frame = 8 * MiB }
    assert.equal(5 * MiB, #big:string(5 * MiB))
  end)

  it("max_values: a frame that claims or holds more values is refused, naming the option", function()
    -- the issue's frame at the new size: 838860 empty tables in 4 MiB, refused
    -- on its count before any is made
    local t0 = now()
    local e = call_fails("protocol", jail, "flood", "tables", 838860, 1)
    print(fmt("\n    a frame of 838860 empty tables refused in %.2f s (the call, box included)", now() - t0))
    assert.matches("more than 250000 in one payload", e.message, 1, true)
    assert.matches("lockup.inmate{ max_values = n }", e.message, 1, true)
    -- values hidden below the top (1000 tables of 300 pairs: 602001 values in
    -- 3 MB, every count small) are counted as they are decoded
    e = call_fails("protocol", jail, "nested", 1000, 300)
    assert.matches("more than 250000 in one payload", e.message, 1, true)
    local roomy = lockup.inmate { dir = BOMB, max_values = 1000000 }
    local t = roomy:nested(1000, 300)
    assert.equal(1000, #t)
    assert.equal(300, #t[1000])
  end)

  it("are options, checked when the jail is made", function()
    for _, case in ipairs { { "max_frame", 0 }, { "max_frame", 2 ^ 32 }, { "max_frame", 1.5 }, { "max_values", 0 },
      { "max_values", -1 }, { "max_values", 0.5 } } do
      local message = helper.raised(function() lockup.inmate { dir = BOMB, [case[1]] = case[2] } end)
      assert.matches("bad option '" .. case[1] .. "'", message, 1, true)
      assert.matches("whole number from 1", message, 1, true)
    end
  end)

  it("apply in local mode too", function()
    local local_jail = lockup.inmate { dir = BOMB, local_mode = true, max_values = 1000 }
    local e = call_fails("protocol", local_jail, "nested", 10, 100)
    assert.matches("more than 1000 in one payload", e.message, 1, true)
    local small = lockup.inmate { dir = BOMB, local_mode = true, max_frame = 1000 }
    e = call_fails("protocol", small, "string", 2000)
    assert.matches("max_frame", e.message, 1, true)
    assert.equal(999, #lockup.inmate { dir = BOMB, local_mode = true }:string(999))
  end)

  -- The target: a hostile jail cannot push the host past about 100 MB above
  -- its baseline, or past its timeout by more than 1 s.
  it("a jail that floods the costliest frames the defaults allow: bounded memory, a live loop, its timeout", function()
    local timeout = 4
    local e, took, gap, peak = watched({ timeout = timeout }, function(j) return j:flood("tables", 250000) end)
    print(fmt("\n    flood of 250000 empty tables a frame, timeout %d s: ended %.2f s after the jail began; "
      .. "the loop's longest gap %.2f s; host RSS at most %.0f MB above its start", timeout, took, gap, peak))
    assert.equal("timeout", e.kind, tostring(e))
    -- Under AddressSanitizer (make test-asan) freed memory waits in its
    -- quarantine, so RSS says nothing about lockup there.
    local asan = (os.getenv("LD_PRELOAD") or ""):find("libasan", 1, true)
    if not asan then assert.is_true(peak < 100, fmt("the host's RSS grew by %.0f MB", peak)) end
    assert.is_true(took < timeout + 3, fmt("the call ended %.2f s after the jail began (timeout %d s)", took, timeout))
    assert.is_true(gap < 2, fmt("the loop stalled for %.2f s", gap))
  end)

  it("a frame too big to decode before the deadline (limits raised): the call still ends at its timeout", function()
    -- 16 million nils: a frame arrives within a second or two, takes seconds
    -- to decode, and costs only its bytes
    local timeout = 5
    local e, took, gap, peak = watched({ timeout = timeout, max_frame = 24 * MiB, max_values = 2 ^ 32 },
      function(j) return j:flood("nils", 16 * MiB) end)
    print(fmt("\n    flood of 16 MiB frames of nils, timeout %d s: ended %.2f s after the jail began; "
      .. "the loop's longest gap %.2f s; host RSS at most %.0f MB above its start", timeout, took, gap, peak))
    assert.equal("timeout", e.kind, tostring(e))
    assert.is_true(took < timeout + 3, fmt("the call ended %.2f s after the jail began (timeout %d s)", took, timeout))
    assert.is_true(gap < 2, fmt("the loop stalled for %.2f s", gap))
  end)
end)
