/**
 * The Envoy-facing Lua layer, identical on every engine: builds Envoy's stream-handle API (handle,
 * header, buffer, metadata, stream-info, connection and SSL objects) as userdata with metatables
 * over ONE flat table of host functions. Written in the common subset of Lua 5.1 (LuaJIT) and 5.4.
 *
 * Conventions:
 * - every host call carries (cid, seg): the hook invocation and its run segment. JS rejects calls
 *   from a finished hook or an earlier segment with Envoy's "object used outside of proper scope",
 *   which is how objects "die" after every yield without touching them.
 * - host errors come back as (false, message) and are raised HERE with error(msg, 2), so the
 *   message carries the script's line number exactly as Envoy's luaL_error does.
 * - blocking methods yield (SENTINEL, op, ...) to the driver; the driver resumes with
 *   (newSeg, results...) or (newSeg, false, message) to raise an error at the call site.
 */
export const SENTINEL = '\u0001meshext.block';

export const PRELUDE = String.raw`
local H = __meshext_host
local ENG = __meshext_engine
local hget, hadd, hrep, dmget, dmset = H.hget, H.hadd, H.hrep, H.dmget, H.dmset
__meshext_host = nil
__meshext_engine = nil
local SENT = "\1meshext.block"
local DEAD = "object used outside of proper scope"
local type, tostring, error, select, setmetatable, next = type, tostring, error, select, setmetatable, next
local yield = coroutine.yield
local format = string.format
local newproxy, getmetatable, tonumber, floor = newproxy, getmetatable, tonumber, math.floor

-- LuaJIT only (nil on wasm): q(op, cid, ...) queues a header mutation or a primitive metadata set
-- in memory shared with JS, which applies it when the run returns or before its next host call
-- (the only moments anything else can look), so the common mutations cost no JS call. Queued only
-- in a hook's first run segment, where the headers are certainly still modifiable.
local q = ENG and ENG.q
-- Prefetch (LuaJIT): the header keys and metadata namespaces that get() asked JS for, per
-- direction, are read by JS at every hook start and passed to the entry function, so get() of a
-- learned key answers without a JS call while nothing changed them. JS keeps the same lists: both
-- sides append on the same successful get() (script.ts, hget/dmget).
local PFK, PFN = { [0] = {}, [1] = {} }, { [0] = {}, [1] = {} }
local function learn(list, k, max)
  local n = #list
  if n >= max then return end
  for i = 1, n do
    if list[i] == k then return end
  end
  list[n + 1] = k
end

-- userdata objects: each object's metatable IS its data table (fields plus __index/__pairs), so
-- there is no side table to maintain: getmetatable(obj) gives the fields. An object belongs to the
-- run segment it was made in; the handle's seg changes at every yield (-2 while suspended, the new
-- segment after, -1 once the hook ended), which is how everything "dies" as Envoy's markDead has it.
-- Host calls are also checked in JS against (cid, seg), but hook ids are reused and segments
-- restart at 1, so every method checks its object's seg against its own handle's first.
local mk
local dsm = debug.setmetatable -- captured before the sandbox removes debug
if ENG and ENG.mk then
  -- LuaJIT: one C call makes the userdata and sets its metatable
  mk = ENG.mk
elseif ENG and ENG.newuds then
  -- Lua 5.4 cannot make userdata itself: the host makes them 32 at a time (one crossing)
  local newuds = ENG.newuds
  local pool, np = {}, 0
  mk = function(d)
    if np == 0 then
      pool = { newuds() }
      np = #pool
    end
    local u = pool[np]
    pool[np] = nil
    np = np - 1
    dsm(u, d)
    return u
  end
else
  mk = function(d)
    local u = newproxy()
    dsm(u, d)
    return u
  end
end
local function newtype(mt)
  local idx, pr = mt.__index, mt.__pairs
  if pr then
    return function(d)
      d.__index = idx
      d.__pairs = pr
      return mk(d)
    end
  end
  return function(d)
    d.__index = idx
    return mk(d)
  end
end

-- The data tables of the objects a handle caches (headers(), streamInfo(), its
-- dynamicMetadata()) belong to the handle's table (ht, st, dmt) and are reused with it, segment
-- after segment: when a segment ends, the userdata, which the script may still hold, is
-- re-pointed to DEADMT, where every method raises the dead-object error. That is 6 of the ~8
-- tables a parity request allocated (~1.5 KB), which the GC no longer allocates, marks and
-- sweeps. The handle caches the segment's userdata in hu, su, mu.
local DEADMT = { seg = -1, h = { seg = -2 } } -- a method that reads it as data sees a dead object
local FHD = { n = 0 }
local POOLMAX = 32
-- a free list of data tables: give() keeps at most POOLMAX, take() returns one or nil
local function give(pool, d)
  local n = pool.n
  if n < POOLMAX then
    n = n + 1
    pool.n = n
    pool[n] = d
  end
end
local function take(pool)
  local n = pool.n
  if n == 0 then return nil end
  local d = pool[n]
  pool[n] = nil
  pool.n = n - 1
  return d
end
-- kill(DEADMT, a, b, c, e) re-points the userdata among its arguments (false: none) to DEADMT;
-- LuaJIT does it in one C call instead of one debug.setmetatable call each
local kill = ENG and ENG.kill
if not kill then
  kill = function(mt, a, b, c, e)
    if a then dsm(a, mt) end
    if b then dsm(b, mt) end
    if c then dsm(c, mt) end
    if e then dsm(e, mt) end
  end
end
-- hu: the handle's own userdata when the hook ends (false at a yield)
local function retire(d, hu)
  local a, b, c = d.hu, d.su, d.mu
  if hu or a or b or c then
    kill(DEADMT, hu, a, b, c)
    d.hu, d.su, d.mu = false, false, false
    if a then d.ht.iter = false end
    if c then d.dmt.iter = false end
  end
end

local function tname(v, i, n)
  if v == nil and i > n then return "no value" end
  return type(v)
end
-- luaL_checkstring as seen from a method: numbers are accepted and converted.
local function cstr(v, i, fname, n)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  error(format("bad argument #%d to '%s' (string expected, got %s)", i, fname, tname(v, i, n or i)), 3)
end
local function cint(v, i, fname)
  local t = type(v)
  if t == "number" then return v end
  if t == "string" and tonumber(v) then return tonumber(v) end
  error(format("bad argument #%d to '%s' (number expected, got %s)", i, fname, tname(v, i, i - 1)), 3)
end
local function self_d(self)
  local d = getmetatable(self)
  if d == nil or d.h == nil or d.seg < 0 or d.seg ~= d.h.seg then error(DEAD, 3) end
  return d
end
local live = self_d
-- a host result of (false, msg) raises msg at the script's call site
local function chk(a, b)
  if a == false then error(b, 3) end
  return a, b
end
local function ret1(a, b)
  if a == false then error(b, 3) end
  if a ~= nil then return a end
end

-- log methods, shared by every object type (as in Envoy's current main)
local function addlog(M)
  local levels = { logTrace = 0, logDebug = 1, logInfo = 2, logWarn = 3, logErr = 4, logCritical = 5 }
  for name, lvl in next, levels do
    M[name] = function(self, msg)
      local d = self_d(self)
      local t = type(msg)
      if t ~= "string" and t ~= "number" then
        error(format("bad argument #1 to '%s' (string expected, got %s)", name, msg == nil and "no value" or t), 2)
      end
      chk(H.log(d.cid, d.seg, lvl, tostring(msg)))
    end
  end
end

-- ---------------------------------------------------------------- headers
local HM = {}
local RHM = {} -- read-only (downstreamRequestHeaders)
local function hiter(self)
  local d = self_d(self)
  if d.iter then error("cannot create a second iterator before completing the first", 2) end
  local flat = chk(H.hpairs(d.cid, d.seg, d.w))
  d.iter = true
  local i, n, h = -1, #flat, d.h
  local seg = d.seg
  return function()
    if h.seg ~= seg then error(DEAD, 2) end
    i = i + 2
    if i > n then d.iter = false; return nil end
    return flat[i], flat[i + 1]
  end, self, nil
end
function HM:get(k)
  local d = getmetatable(self)
  if d == nil or d.seg ~= d.h.seg then error(DEAD, 2) end
  if type(k) ~= "string" then k = cstr(k, 1, "get") end
  local h = d.h
  if d.w == 0 and h.pf then
    -- a prefetched value: a string, nil (absent) or false (not prefetched)
    local K, v = PFK[h.dir], false
    if k == K[1] then v = h.p1 elseif k == K[2] then v = h.p2 elseif k == K[3] then v = h.p3 elseif k == K[4] then v = h.p4 end
    if v ~= false then
      if v ~= nil then return v end
      return
    end
  end
  local v, e = hget(d.cid, d.seg, d.w, k)
  if v == false then error(e, 2) end
  if q and d.w == 0 then learn(PFK[h.dir], k, 4) end
  if v ~= nil then return v end
end
function HM:getAtIndex(k, i)
  local d = self_d(self)
  return (chk(H.hidx(d.cid, d.seg, d.w, cstr(k, 1, "getAtIndex"), cint(i, 2, "getAtIndex"))))
end
function HM:getNumValues(k)
  local d = self_d(self)
  return (chk(H.hnum(d.cid, d.seg, d.w, cstr(k, 1, "getNumValues"))))
end
local function mut(d)
  if d.iter then error("header map cannot be modified while iterating", 3) end
end
function HM:add(k, v)
  local d = getmetatable(self)
  if d == nil or d.seg ~= d.h.seg then error(DEAD, 2) end
  if type(k) ~= "string" then k = cstr(k, 1, "add") end
  if type(v) ~= "string" then v = cstr(v, 2, "add") end
  if d.iter then error("header map cannot be modified while iterating", 2) end
  if d.w == 0 then
    local h = d.h
    h.pf = false
    if h.wq and q(1, d.cid, k, v) then return end
  end
  local r, e = hadd(d.cid, d.seg, d.w, k, v)
  if r == false then error(e, 2) end
end
function HM:replace(k, v)
  local d = getmetatable(self)
  if d == nil or d.seg ~= d.h.seg then error(DEAD, 2) end
  if type(k) ~= "string" then k = cstr(k, 1, "replace") end
  if type(v) ~= "string" then v = cstr(v, 2, "replace") end
  if d.iter then error("header map cannot be modified while iterating", 2) end
  if d.w == 0 then
    local h = d.h
    h.pf = false
    if h.wq and q(2, d.cid, k, v) then return end
  end
  local r, e = hrep(d.cid, d.seg, d.w, k, v)
  if r == false then error(e, 2) end
end
function HM:remove(k)
  local d = self_d(self)
  k = cstr(k, 1, "remove")
  mut(d)
  if d.w == 0 then
    local h = d.h
    h.pf = false
    if h.wq and q(3, d.cid, k) then return end
  end
  chk(H.hrem(d.cid, d.seg, d.w, k))
end
function HM:setHttp1ReasonPhrase(p)
  local d = self_d(self)
  chk(H.hreason(d.cid, d.seg, d.w, cstr(p, 1, "setHttp1ReasonPhrase")))
end
addlog(HM)
RHM.get, RHM.getAtIndex, RHM.getNumValues = HM.get, HM.getAtIndex, HM.getNumValues
addlog(RHM)
local newHeaders = newtype({ __index = HM, __pairs = hiter })
local newRHeaders = newtype({ __index = RHM, __pairs = hiter })

-- ---------------------------------------------------------------- buffer
local BM = {}
function BM:length()
  local d = self_d(self)
  return (chk(H.blen(d.cid, d.seg, d.w)))
end
function BM:getBytes(i, n)
  local d = self_d(self)
  return (chk(H.bget(d.cid, d.seg, d.w, cint(i, 1, "getBytes"), cint(n, 2, "getBytes"))))
end
function BM:setBytes(s)
  local d = self_d(self)
  d.h.pf = false -- content-length changes
  return (chk(H.bset(d.cid, d.seg, d.w, cstr(s, 1, "setBytes"))))
end
addlog(BM)
local newBuffer = newtype({ __index = BM })

-- ---------------------------------------------------------------- read-only metadata
local MM = {}
function MM:get(k)
  local d = live(self)
  local v = d.t[k]
  if v ~= nil then return v end
end
addlog(MM)
local function miter(self)
  local d = live(self)
  local t, h, seg = d.t, d.h, d.seg
  local k
  return function()
    if h.seg ~= seg then error(DEAD, 2) end
    local v
    k, v = next(t, k)
    return k, v
  end, self, nil
end
local newMeta = newtype({ __index = MM, __pairs = miter })
local EMPTY = {}
local function meta(d, kind)
  if d.seg < 0 then error(DEAD, 3) end
  local t = chk(H.meta(d.cid, d.seg, kind))
  return newMeta({ cid = d.cid, seg = d.seg, h = d, t = t or EMPTY })
end

-- ---------------------------------------------------------------- dynamic metadata
local DM = {}
function DM:get(ns)
  local d = getmetatable(self)
  if d == nil or d.seg ~= d.h.seg then error(DEAD, 2) end
  if type(ns) ~= "string" then ns = cstr(ns, 1, "get") end
  local h = d.h
  if h.pfm then
    -- a prefetched namespace: a table (handed out once: the script may change it), nil (absent)
    -- or false (not prefetched)
    local N = PFN[h.dir]
    if ns == N[1] then
      local t = h.m1
      if t ~= false then
        if t == nil then return end
        h.m1 = false
        return t
      end
    elseif ns == N[2] then
      local t = h.m2
      if t ~= false then
        if t == nil then return end
        h.m2 = false
        return t
      end
    end
  end
  local v, e = dmget(d.cid, d.seg, ns)
  if v == false then error(e, 2) end
  if q then learn(PFN[h.dir], ns, 2) end
  if v ~= nil then return v end
end
function DM:set(ns, k, v)
  local d = getmetatable(self)
  if d == nil or d.seg ~= d.h.seg then error(DEAD, 2) end
  if type(ns) ~= "string" then ns = cstr(ns, 1, "set") end
  if type(k) ~= "string" then k = cstr(k, 2, "set") end
  if d.iter then error("dynamic metadata map cannot be modified while iterating", 2) end
  local h = d.h
  h.pfm = false
  if h.wq then
    local tv = type(v)
    if (tv == "string" or tv == "number" or tv == "boolean") and q(4, d.cid, ns, k, v) then return end
  end
  local r, e = dmset(d.cid, d.seg, ns, k, v)
  if r == false then error(e, 2) end
end
addlog(DM)
local function dmiter(self)
  local d = self_d(self)
  if d.iter then error("cannot create a second iterator before completing the first", 2) end
  local t = chk(H.dmpairs(d.cid, d.seg, d.conn))
  d.iter = true
  local h, seg, k = d.h, d.seg, nil
  return function()
    if h.seg ~= seg then error(DEAD, 2) end
    local v
    k, v = next(t, k)
    if k == nil then d.iter = false end
    return k, v
  end, self, nil
end
local newDM = newtype({ __index = DM, __pairs = dmiter })
local CDM = { get = DM.get }
local newCDM = newtype({ __index = CDM, __pairs = dmiter })

-- ---------------------------------------------------------------- filter state
local FS = {}
function FS:get(name, field)
  local d = self_d(self)
  name = cstr(name, 1, "get")
  if field ~= nil then field = cstr(field, 2, "get") end
  return (chk(H.fsget(d.cid, d.seg, name, field)))
end
addlog(FS)
local newFS = newtype({ __index = FS })

-- ---------------------------------------------------------------- ssl
local SM = {}
local function sslfn(name)
  return function(self)
    local d = self_d(self)
    local ok, v = H.ssl(d.cid, d.seg, name)
    if ok == false then error(v, 2) end
    return v
  end
end
for _, n in next, { "peerCertificatePresented", "peerCertificateValidated", "uriSanLocalCertificate",
  "uriSanPeerCertificate", "dnsSansLocalCertificate", "dnsSansPeerCertificate", "oidsPeerCertificate",
  "oidsLocalCertificate", "sha256PeerCertificateDigest", "serialNumberPeerCertificate", "issuerPeerCertificate",
  "subjectPeerCertificate", "subjectLocalCertificate", "urlEncodedPemEncodedPeerCertificate",
  "urlEncodedPemEncodedPeerCertificateChain", "validFromPeerCertificate", "expirationPeerCertificate",
  "sessionId", "ciphersuiteId", "ciphersuiteString", "tlsVersion" } do
  SM[n] = sslfn(n)
end
local PSM = {}
function PSM:commonName() local d = live(self); return d.cn end
function PSM:organizationName() local d = live(self); return d.o end
local newParsed = newtype({ __index = PSM })
function SM:parsedSubjectPeerCertificate()
  local d = self_d(self)
  local ok, v = H.ssl(d.cid, d.seg, "parsedSubjectPeerCertificate")
  if ok == false then error(v, 2) end
  if v == nil then return nil end
  return newParsed({ cid = d.cid, seg = d.seg, h = d.h, cn = v.commonName, o = v.organizationName })
end
addlog(SM)
local newSsl = newtype({ __index = SM })
local function ssl(d)
  local ok, v = H.ssl(d.cid, d.seg, "present")
  if ok == false then error(v, 3) end
  if not v then return nil end
  return newSsl({ cid = d.cid, seg = d.seg, h = d.h })
end

-- ---------------------------------------------------------------- stream info
local SI = {}
local function sifn(name)
  return function(self)
    local d = self_d(self)
    return (chk(H.si(d.cid, d.seg, name)))
  end
end
for _, n in next, { "protocol", "downstreamLocalAddress", "downstreamDirectLocalAddress", "downstreamRemoteAddress",
  "downstreamDirectRemoteAddress", "requestedServerName", "routeName", "virtualClusterName" } do
  SI[n] = sifn(n)
end
function SI:dynamicMetadata()
  local d = getmetatable(self)
  if d == nil or d.h == nil or d.seg ~= d.h.seg then error(DEAD, 2) end
  local h = d.h
  local u = h.mu
  if u then return u end
  local od = h.dmt
  if od then
    od.cid, od.seg = d.cid, d.seg
  else
    od = { __index = DM, __pairs = dmiter, cid = d.cid, seg = d.seg, h = h, iter = false }
    h.dmt = od
  end
  u = mk(od)
  h.mu = u
  return u
end
function SI:dynamicTypedMetadata(ns)
  local d = self_d(self)
  return ret1(H.typedmeta(d.cid, d.seg, cstr(ns, 1, "dynamicTypedMetadata")))
end
function SI:filterState()
  local d = live(self)
  return newFS({ cid = d.cid, seg = d.seg, h = d.h })
end
function SI:downstreamSslConnection()
  return ssl(self_d(self))
end
function SI:drainConnectionUponCompletion()
  local d = self_d(self)
  chk(H.drain(d.cid, d.seg))
end
addlog(SI)
local newSI = newtype({ __index = SI })
local CSI = {}
function CSI:dynamicMetadata()
  local d = live(self)
  return newCDM({ cid = d.cid, seg = d.seg, h = d.h, conn = true })
end
function CSI:dynamicTypedMetadata(ns)
  local d = self_d(self)
  return ret1(H.typedmeta(d.cid, d.seg, cstr(ns, 1, "dynamicTypedMetadata"), true))
end
addlog(CSI)
local newCSI = newtype({ __index = CSI })

local CM = {}
function CM:ssl() return ssl(self_d(self)) end
addlog(CM)
local newConn = newtype({ __index = CM })

local VM = {}
function VM:metadata() local d = self_d(self); return meta(d.h, d.kind) end
addlog(VM)
local newVhost = newtype({ __index = VM })

local PK = {}
function PK:get() local d = live(self); return d.key end
local newPK = newtype({ __index = PK })

local ST = {}
local function statobj(kind, methods)
  local M = {}
  for _, op in next, methods do
    M[op] = function(self, v)
      local d = self_d(self)
      return (chk(H.stat(d.cid, d.seg, kind, d.name, op, v, d.unit)))
    end
  end
  return newtype({ __index = M })
end
local newCounter = statobj("counter", { "inc", "add", "value" })
local newGauge = statobj("gauge", { "inc", "dec", "add", "sub", "set", "value" })
local newHisto = statobj("histogram", { "recordValue" })
function ST:counter(n) local d = self_d(self); n = cstr(n, 1, "counter"); chk(H.stat(d.cid, d.seg, "counter", n, "create")); return newCounter({ cid = d.cid, seg = d.seg, h = d.h, name = n }) end
function ST:gauge(n) local d = self_d(self); n = cstr(n, 1, "gauge"); chk(H.stat(d.cid, d.seg, "gauge", n, "create")); return newGauge({ cid = d.cid, seg = d.seg, h = d.h, name = n }) end
function ST:histogram(n, u)
  local d = self_d(self)
  n = cstr(n, 1, "histogram")
  if u ~= nil then u = cstr(u, 2, "histogram") end
  chk(H.stat(d.cid, d.seg, "histogram", n, "create", nil, u))
  return newHisto({ cid = d.cid, seg = d.seg, h = d.h, name = n, unit = u })
end
local newStats = newtype({ __index = ST })

-- ---------------------------------------------------------------- stream handle
local HD = {}


-- Suspends the hook until the driver resumes it; everything made before is dead afterwards.
local function block(d, op, a, b, c, e, f)
  if d.seg < 0 then error(DEAD, 3) end
  d.seg = -2 -- dead while suspended: another coroutine must not use this handle meanwhile
  -- JS may change the stream while the hook waits: no more prefetched values or queued writes
  d.pf, d.pfm, d.wq = false, false, false
  retire(d, false)
  d.pk = false
  local seg, r1, r2 = yield(SENT, op, a, b, c, e, f)
  d.seg = seg
  if r1 == false then error(r2, 3) end
  return r1, r2
end

function HD:headers()
  local d = getmetatable(self)
  if d == nil or d.h ~= d or d.seg < 0 then error(DEAD, 2) end
  local u = d.hu
  if u then return u end
  local od = d.ht
  if od then
    od.cid, od.seg = d.cid, d.seg
  else
    od = { __index = HM, __pairs = hiter, cid = d.cid, seg = d.seg, h = d, w = 0, iter = false }
    d.ht = od
  end
  u = mk(od)
  d.hu = u
  return u
end
function HD:downstreamRequestHeaders()
  local d = self_d(self)
  local has = chk(H.reqheaders(d.cid, d.seg))
  if has then return newRHeaders({ cid = d.cid, seg = d.seg, h = d, w = 3 }) end
end
function HD:body(always)
  local d = self_d(self)
  if always ~= nil and type(always) ~= "boolean" then
    error(format("bad argument #1 to 'body' (boolean expected, got %s)", type(always)), 2)
  end
  local r = block(d, "body", always == true)
  if r then return newBuffer({ cid = d.cid, seg = d.seg, h = d, w = 0 }) end
end
function HD:bodyChunks()
  local d = self_d(self)
  chk(H.chunks(d.cid, d.seg))
  return function()
    local r = block(d, "chunk")
    if r then return newBuffer({ cid = d.cid, seg = d.seg, h = d, w = 1 }) end
  end
end
function HD:trailers()
  local d = self_d(self)
  local r = block(d, "trailers")
  if r then return newHeaders({ cid = d.cid, seg = d.seg, h = d, w = 2 }) end
end
function HD:metadata() return meta(self_d(self), "handle") end
function HD:filterContext() return meta(self_d(self), "context") end
function HD:virtualHost()
  local d = self_d(self)
  return newVhost({ cid = d.cid, seg = d.seg, h = d, kind = "vhost" })
end
function HD:route()
  local d = self_d(self)
  return newVhost({ cid = d.cid, seg = d.seg, h = d, kind = "route" })
end
function HD:streamInfo()
  local d = getmetatable(self)
  if d == nil or d.h ~= d or d.seg < 0 then error(DEAD, 2) end
  local u = d.su
  if u then return u end
  local od = d.st
  if od then
    od.cid, od.seg = d.cid, d.seg
  else
    od = { __index = SI, cid = d.cid, seg = d.seg, h = d }
    d.st = od
  end
  u = mk(od)
  d.su = u
  return u
end
function HD:connectionStreamInfo()
  local d = self_d(self)
  return newCSI({ cid = d.cid, seg = d.seg, h = d })
end
function HD:connection()
  local d = self_d(self)
  return newConn({ cid = d.cid, seg = d.seg, h = d })
end
function HD:stats()
  local d = self_d(self)
  return newStats({ cid = d.cid, seg = d.seg, h = d })
end
local OPTS = { asynchronous = true, timeout_ms = true, trace_sampled = true, return_duplicate_headers = true, send_xff = true }
function HD:httpCall(...)
  local d = self_d(self)
  local n = select("#", ...)
  local cluster, headers, body, timeout, async = ...
  local opts
  if type(timeout) == "table" then
    opts = timeout
    for k in next, opts do
      if not OPTS[k] then error(format('"%s" is not valid key for httpCall() options', tostring(k)), 2) end
    end
    timeout = opts.timeout_ms or 0
    async = opts.asynchronous
    if type(timeout) ~= "number" then error("bad argument #4 to 'httpCall' (number expected, got " .. type(timeout) .. ")", 2) end
  else
    if n >= 5 and type(async) ~= "boolean" then
      error("http call asynchronous flag must be 'true', 'false', or empty", 2)
    end
  end
  cluster = cstr(cluster, 1, "httpCall", n)
  if type(headers) ~= "table" then
    error(format("bad argument #2 to 'httpCall' (table expected, got %s)", tname(headers, 2, n)), 2)
  end
  if body ~= nil then body = cstr(body, 3, "httpCall", n) end
  if opts == nil then timeout = cint(timeout, 4, "httpCall") end
  if timeout < 0 then error("http call timeout must be >= 0", 2) end
  chk(H.cluster(d.cid, d.seg, cluster))
  if headers[":path"] == nil or headers[":method"] == nil or headers[":authority"] == nil then
    error("http call headers must include ':path', ':method', and ':authority'", 2)
  end
  if async then
    chk(H.async(d.cid, d.seg, cluster, headers, body, timeout, opts))
    return
  end
  return block(d, "http", cluster, headers, body, timeout, opts)
end
function HD:respond(headers, body)
  local d = self_d(self)
  chk(H.canrespond(d.cid, d.seg))
  if type(headers) ~= "table" then
    error(format("bad argument #1 to 'respond' (table expected, got %s)", type(headers)), 2)
  end
  if body ~= nil then body = cstr(body, 2, "respond") end
  local st = tonumber(headers[":status"])
  if st == nil or st < 200 or st >= 600 or st ~= floor(st) then error(":status must be between 200-599", 2) end
  if d.dir == 1 then error("respond not currently supported in the response path", 2) end
  block(d, "respond", headers, body)
end
function HD:base64Escape(s)
  local d = self_d(self)
  return (chk(H.b64(d.cid, d.seg, cstr(s, 1, "base64Escape"))))
end
function HD:timestamp(res)
  local d = self_d(self)
  if res ~= nil and res ~= 0 then error("timestamp format must be MILLISECOND.", 2) end
  return (chk(H.ts(d.cid, d.seg, 0)))
end
function HD:timestampString(res)
  local d = self_d(self)
  if res ~= nil and res ~= 0 and res ~= 1 then error("timestamp format must be MILLISECOND or MICROSECOND.", 2) end
  return (chk(H.tss(d.cid, d.seg, res or 0)))
end
function HD:importPublicKey(key, len)
  local d = self_d(self)
  local o = d.pk
  if o then return o end
  key = cstr(key, 1, "importPublicKey")
  len = cint(len, 2, "importPublicKey")
  local k = chk(H.importKey(d.cid, d.seg, key, len))
  o = newPK({ cid = d.cid, seg = d.seg, h = d, key = k })
  d.pk = o
  return o
end
function HD:verifySignature(hash, key, sig, siglen, data, datalen)
  local d = self_d(self)
  hash = cstr(hash, 1, "verifySignature")
  key = cstr(key, 2, "verifySignature")
  sig = cstr(sig, 3, "verifySignature")
  siglen = cint(siglen, 4, "verifySignature")
  data = cstr(data, 5, "verifySignature")
  datalen = cint(datalen, 6, "verifySignature")
  local ok, msg, err = H.verify(d.cid, d.seg, hash, key, sig, siglen, data, datalen)
  if ok == nil then error(msg, 2) end
  return ok, msg
end
function HD:clearRouteCache()
  local d = self_d(self)
  chk(H.crc(d.cid, d.seg))
end
function HD:setUpstreamOverrideHost(...)
  local d = self_d(self)
  local n = select("#", ...)
  local host, strict = ...
  if type(host) ~= "string" then
    error(format("bad argument #1 to 'setUpstreamOverrideHost' (string expected, got %s)", tname(host, 1, n)), 2)
  end
  if strict ~= nil and type(strict) ~= "boolean" then
    error(format("bad argument #2 to 'setUpstreamOverrideHost' (boolean expected, got %s)", type(strict)), 2)
  end
  chk(H.override(d.cid, d.seg, host, strict == true))
end
addlog(HD)

-- every method of a recycled object's types, on a dead one, raises at the caller's line
do
  local function dead() error(DEAD, 2) end
  local idx = {}
  for _, M in next, { HD, HM, SI, DM } do
    for k in next, M do idx[k] = dead end
  end
  DEADMT.__index = idx
  DEADMT.__pairs = hiter -- raises through self_d, as iterating a dead live-shaped object does
end

EnvoyTimestampResolution = { MILLISECOND = 0, MICROSECOND = 1 }

-- Hook entry: one coroutine per hook invocation. The handle is dead once the hook ends, even if
-- the script kept it in a global (Envoy test ThreadEnvironments).
local hooks = {}
function __meshext_capture()
  hooks[0] = type(envoy_on_request) == "function" and envoy_on_request or nil
  hooks[1] = type(envoy_on_response) == "function" and envoy_on_response or nil
  __meshext_hooks = (hooks[0] and 1 or 0) + (hooks[1] and 2 or 0)
  __meshext_capture = nil
end
-- Handle data by hook id, while the hook runs or waits: hooks that ended by an error or were
-- abandoned (reset, respond()) are marked dead when the driver passes their id to the next entry
-- (before any script code runs). A handle that ended is dead for good: its userdata goes to
-- DEADMT and its table is recycled (segments are unique, see LuaScript.nextSegment, so objects
-- and iterators of the old hook never match the table's new segment).
local LIVE = {}
local function release(d)
  d.seg = -1
  -- d.u is false when mk() failed (out of memory) before the hook ran
  retire(d, d.u)
  d.pk = false
  d.p1, d.p2, d.p3, d.p4, d.m1, d.m2 = false, false, false, false, false, false
  d.u = false
  give(FHD, d)
end
-- pf: when JS prefetched (LuaJIT), the sizes of its lists (keys * 8 + namespaces), which must be
-- those of PFK[dir] and PFN[dir]; then p1..p4 are the values of PFK[dir]'s keys and m1, m2 the
-- tables of PFN[dir]'s namespaces (nil absent, false not prefetched).
local WQ = q ~= nil
function __meshext_entry(dir, cid, seg, reap, pf, p1, p2, p3, p4, m1, m2)
  if reap ~= 0 then
    local pd = LIVE[reap]
    if pd ~= nil then
      LIVE[reap] = nil
      release(pd)
    end
  end
  local d = take(FHD)
  pf = pf == #PFK[dir] * 8 + #PFN[dir] -- see LuaScript.prefetch (nil: nothing prefetched)
  if d then
    d.__index, d.cid, d.seg, d.dir, d.h = HD, cid, seg, dir, d
  else
    -- every field the handle will hold is in the constructor: later stores reuse their slots
    -- instead of growing the table (h, pk, u, the object tables and userdata are set as the hook runs)
    d = { __index = HD, cid = cid, seg = seg, dir = dir, h = false, pk = false, u = false,
      ht = false, st = false, dmt = false, hu = false, su = false, mu = false,
      wq = false, pf = false, pfm = false, p1 = false, p2 = false, p3 = false, p4 = false, m1 = false, m2 = false }
    d.h = d
  end
  d.wq, d.pf, d.pfm, d.p1, d.p2, d.p3, d.p4, d.m1, d.m2 = WQ, pf, pf, p1, p2, p3, p4, m1, m2
  LIVE[cid] = d
  local u = mk(d)
  d.u = u
  hooks[dir](u)
  LIVE[cid] = nil
  release(d)
end
`;

/** LuaJIT as Debian builds it lacks LUAJIT_ENABLE_LUA52COMPAT, which Envoy enables. */
export const COMPAT_LUAJIT = String.raw`
do
  local rawpairs, getmetatable, rawtype = pairs, getmetatable, type
  -- honour __pairs as 5.2 (and Envoy's LuaJIT) does: header and metadata iteration relies on it
  pairs = function(t)
    local mt = getmetatable(t)
    if rawtype(mt) == "table" and mt.__pairs then return mt.__pairs(t) end
    return rawpairs(t)
  end
  table.pack = table.pack or function(...) return { n = select("#", ...), ... } end
  table.unpack = table.unpack or unpack
end
`;

/** Removes what a trusted Envoy config would have but a shared proxy should not give scripts. */
export const SANDBOX = String.raw`
do
  local os0 = os
  local jitoff = jit and jit.off -- taken before jit is removed below
  -- keep the harmless clock functions that scripts in the wild use
  os = os0 and { time = os0.time, date = os0.date, clock = os0.clock, difftime = os0.difftime } or nil
  io, debug, dofile, loadfile, require, module = nil, nil, nil, nil, nil, nil
  if package then
    package.loaded.ffi = nil
    if package.preload then package.preload.ffi = nil end
    package.loaded.io, package.loaded.os, package.loaded.debug, package.loaded.jit = nil, nil, nil, nil
  end
  package = nil
  ffi = nil
  jit = nil
  collectgarbage = (function(cg)
    return function(opt, ...)
      -- scripts may collect or query memory; they may not stop the collector or retune it
      if opt == nil or opt == "collect" or opt == "count" or opt == "step" then return cg(opt, ...) end
      return 0
    end
  end)(collectgarbage)
  local load0 = load
  -- LuaJIT with a budget compiles only meshext's own code: what a script loads is marked like the
  -- script itself (interpreted, so the count hook sees it); jit.off(f, true) covers its functions
  local function nojit(f, e)
    if f and jitoff then jitoff(f, true) end
    return f, e
  end
  -- text chunks only: crafted bytecode can crash the VM
  load = function(chunk, name, mode, env)
    if env ~= nil then return nojit(load0(chunk, name, "t", env)) end
    return nojit(load0(chunk, name, "t"))
  end
  if loadstring then loadstring = function(s, name) return nojit(load0(s, name, "t")) end end
  -- Finalizers run outside the instruction budget (neither LuaJIT nor Lua 5.4 calls hooks inside
  -- __gc), so a script may not give any object one: LuaJIT's newproxy(true) makes finalizable
  -- userdata, Lua 5.4 finalizes tables whose metatable has __gc, and a handle's metatable (its data
  -- table) would let a script add __gc to meshext's own objects.
  newproxy = nil
  local rawtype, rawget0, smt0, gmt0 = type, rawget, setmetatable, getmetatable
  setmetatable = function(t, mt)
    if rawtype(mt) == "table" and rawget0(mt, "__gc") ~= nil then
      error("__gc metamethods are not allowed: finalizers would run outside the instruction budget", 2)
    end
    return smt0(t, mt)
  end
  getmetatable = function(v)
    if rawtype(v) == "userdata" then return nil end
    return gmt0(v)
  end
end
`;
