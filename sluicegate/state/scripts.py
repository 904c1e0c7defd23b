"""Lua scripts of the Redis limit backend, data layout v1 (keys under ``<prefix>{g}:``).

Layout (``P`` = prefix + ``{g}:``; one hash tag so a Redis Cluster accepts multi-key scripts):

- ``P w:<scope>``  hash: ``o``/``n`` oldest/newest bucket held, ``sum_r``/``sum_t`` running sums
  of the buckets ``o .. n``, ``r<b>``/``t<b>`` requests and tokens of bucket ``b`` (TTL 120 s)
- ``P c:<scope>``  zset: in-flight lease -> expiry (TTL 2 x lease_ttl)
- ``P b:<scope>:<period id>:spent``  string: nano-USD spent (TTL period end + 35 days)
- ``P b:<scope>:<period id>:held``   hash: lease -> nano held, ``held:sum`` -> their total
- ``P b:<scope>:<period id>:expiry`` zset: lease -> hold expiry (both TTL 2 x lease_ttl)

A change of layout must change the prefix (``sg:v2:``) so old and new gateways never share
keys they read differently.
"""

from __future__ import annotations

HELD_SUM = "held:sum"

_COMMON = """
local HELD_SUM = 'held:sum'
local WINDOW = 61
local clock = redis.call('TIME')
local sec, usec = tonumber(clock[1]), tonumber(clock[2])
local now = sec + usec / 1000000
local first = sec - WINDOW + 1
local function num(v) return tonumber(v) or 0 end
local function score(t) return string.format('%.6f', t) end
"""

# KEYS: per limit: window hash, concurrency zset; then per hold: spent, held hash, expiry zset.
# ARGV: lease, tokens, lease_ttl_ms, limit count, (rpm, tpm, max_parallel) per limit,
#       hold count, (limit_nano, amount_nano) per hold. -1 means "no such limit".
# Returns integers: ok, sec, usec, refusing index (1-based over limits then holds), kind
# (1 rpm, 2 tpm, 3 parallel, 4 budget), used, bucket whose leaving frees enough (-1: none);
# per limit: counted requests, tokens, oldest bucket with requests, with tokens (-1: none);
# per hold: spent + held after this hold.
ACQUIRE = (
    _COMMON
    + """
local lease, tokens, ttl_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local nlimits = tonumber(ARGV[4])
local hbase = 4 + 3 * nlimits
local nholds = tonumber(ARGV[hbase + 1])
local kbase = 2 * nlimits
local nowscore = score(now)

-- Drop the buckets that left the window and the empty ones at its front (amortised O(1)).
local function expire(key)
  local h = redis.call('HMGET', key, 'o', 'n', 'sum_r', 'sum_t')
  if not h[1] then return {o = sec, n = sec, r = 0, t = 0, ro = 0, to = 0} end
  local w = {o = tonumber(h[1]), n = tonumber(h[2]), r = num(h[3]), t = num(h[4])}
  if w.n < first then
    redis.call('DEL', key)
    return {o = sec, n = sec, r = 0, t = 0, ro = 0, to = 0}
  end
  local start = w.o
  while w.o <= w.n do
    local b = redis.call('HMGET', key, 'r' .. w.o, 't' .. w.o)
    local br, bt = num(b[1]), num(b[2])
    if w.o >= first and (br > 0 or bt > 0) then
      w.ro, w.to = br, bt  -- the front bucket's counts: the headers' reset needs them
      break
    end
    if b[1] or b[2] then
      redis.call('HDEL', key, 'r' .. w.o, 't' .. w.o)
      w.r, w.t = w.r - br, w.t - bt
    end
    w.o = w.o + 1
  end
  if w.o > w.n then
    redis.call('DEL', key)
    return {o = sec, n = sec, r = 0, t = 0, ro = 0, to = 0}
  end
  if w.o ~= start then redis.call('HSET', key, 'o', w.o, 'sum_r', w.r, 'sum_t', w.t) end
  return w
end

local function oldest(key, w, kind)
  if (kind == 'r' and w.ro or w.to) > 0 then return w.o end
  for b = w.o + 1, w.n do
    if num(redis.call('HGET', key, kind .. b)) > 0 then return b end
  end
  return -1
end

local function freed_at(key, w, kind, left, fits)
  for b = w.o, w.n do
    local v = num(redis.call('HGET', key, kind .. b))
    if v > 0 then
      left = left - v
      if fits(left) then return b end
    end
  end
  return -1
end

local limits, windows, refusal = {}, {}, nil
for i = 1, nlimits do
  local rpm, tpm = tonumber(ARGV[3 * i + 2]), tonumber(ARGV[3 * i + 3])
  local maxp = tonumber(ARGV[3 * i + 4])
  local wkey, ckey = KEYS[2 * i - 1], KEYS[2 * i]
  limits[i] = {rpm = rpm, tpm = tpm, maxp = maxp}
  if rpm >= 0 or tpm >= 0 then
    local w = expire(wkey)
    windows[i] = w
    if not refusal and rpm >= 0 and w.r + 1 > rpm then
      local fits = function(left) return left + 1 <= rpm end
      refusal = {i, 1, w.r, freed_at(wkey, w, 'r', w.r, fits)}
    elseif not refusal and tpm >= 0 and w.t > 0 and w.t + tokens > tpm then
      local fits = function(left) return left == 0 or left + tokens <= tpm end
      refusal = {i, 2, w.t, freed_at(wkey, w, 't', w.t, fits)}
    end
  end
  if maxp >= 0 and not refusal then
    redis.call('ZREMRANGEBYSCORE', ckey, '-inf', nowscore)
    local leases = redis.call('ZCARD', ckey)
    if leases + 1 > maxp then refusal = {i, 3, leases, -1} end
  end
end

local used = {}
for j = 1, nholds do
  if refusal then break end
  local skey, hkey, ekey = KEYS[kbase + 3 * j - 2], KEYS[kbase + 3 * j - 1], KEYS[kbase + 3 * j]
  local expired = redis.call('ZRANGEBYSCORE', ekey, '-inf', nowscore)
  if #expired > 0 then
    local freed = 0
    for _, member in ipairs(expired) do
      freed = freed + num(redis.call('HGET', hkey, member))
      redis.call('HDEL', hkey, member)
      redis.call('ZREM', ekey, member)
    end
    redis.call('HINCRBY', hkey, HELD_SUM, -freed)
  end
  used[j] = num(redis.call('GET', skey)) + num(redis.call('HGET', hkey, HELD_SUM))
  local limit, amount = tonumber(ARGV[hbase + 2 * j]), tonumber(ARGV[hbase + 2 * j + 1])
  if used[j] + amount > limit then refusal = {nlimits + j, 4, used[j], -1} end
end

local out
if refusal then
  out = {0, sec, usec, refusal[1], refusal[2], refusal[3], refusal[4]}
else
  out = {1, sec, usec, 0, 0, 0, -1}
  local expiry = score(now + ttl_ms / 1000)
  for i = 1, nlimits do
    local w = windows[i]
    if w then
      local key = KEYS[2 * i - 1]
      if sec < w.o then w.o, w.ro, w.to = sec, 0, 0 end
      if sec > w.n then w.n = sec end
      if sec == w.o then w.ro, w.to = w.ro + 1, w.to + tokens end
      redis.call('HINCRBY', key, 'r' .. sec, 1)
      redis.call('HINCRBY', key, 't' .. sec, tokens)
      w.r, w.t = w.r + 1, w.t + tokens
      redis.call('HSET', key, 'o', w.o, 'n', w.n, 'sum_r', w.r, 'sum_t', w.t)
      redis.call('EXPIRE', key, 120)
    end
    if limits[i].maxp >= 0 then
      redis.call('ZADD', KEYS[2 * i], expiry, lease)
      redis.call('PEXPIRE', KEYS[2 * i], 2 * ttl_ms)
    end
  end
  for j = 1, nholds do
    local hkey, ekey = KEYS[kbase + 3 * j - 1], KEYS[kbase + 3 * j]
    local amount = tonumber(ARGV[hbase + 2 * j + 1])
    redis.call('HINCRBY', hkey, lease, amount)
    redis.call('HINCRBY', hkey, HELD_SUM, amount)
    redis.call('ZADD', ekey, expiry, lease)
    redis.call('PEXPIRE', hkey, 2 * ttl_ms)
    redis.call('PEXPIRE', ekey, 2 * ttl_ms)
    used[j] = used[j] + amount
  end
end
for i = 1, nlimits do
  local w = windows[i]
  if w then
    local key = KEYS[2 * i - 1]
    out[#out + 1] = w.r
    out[#out + 1] = w.t
    out[#out + 1] = limits[i].rpm >= 0 and oldest(key, w, 'r') or -1
    out[#out + 1] = limits[i].tpm >= 0 and oldest(key, w, 't') or -1
  else
    for _ = 1, 4 do out[#out + 1] = 0 end
  end
end
if not refusal then
  for j = 1, nholds do out[#out + 1] = used[j] end
end
return out
"""
)

# Settle (spend >= 0) or release (spend = -1): free the lease and holds, correct the bucket.
# KEYS as ACQUIRE. ARGV: lease, acquire bucket, requests delta, tokens delta, spend,
# limit count, (windowed 0/1, parallel 0/1) per limit, hold count, spent EXPIREAT per hold
# (0: none). Returns spent after this settle per hold (nothing on release).
FINISH = (
    _COMMON
    + """
local lease, at, dr, dt = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local spend, nlimits = tonumber(ARGV[5]), tonumber(ARGV[6])
local hbase = 6 + 2 * nlimits
local nholds = tonumber(ARGV[hbase + 1])
local kbase = 2 * nlimits
for i = 1, nlimits do
  local wkey, ckey = KEYS[2 * i - 1], KEYS[2 * i]
  if ARGV[5 + 2 * i] == '1' and at >= first then
    -- A bucket field exists only while the bucket is inside [o, n], i.e. still counted.
    local h = redis.call('HMGET', wkey, 'r' .. at, 't' .. at)
    if h[1] or h[2] then
      local r, t = num(h[1]), num(h[2])
      local nr, nt = math.max(0, r + dr), math.max(0, t + dt)
      redis.call('HSET', wkey, 'r' .. at, nr, 't' .. at, nt)
      redis.call('HINCRBY', wkey, 'sum_r', nr - r)
      redis.call('HINCRBY', wkey, 'sum_t', nt - t)
    end
  end
  if ARGV[6 + 2 * i] == '1' then redis.call('ZREM', ckey, lease) end
end
local out = {}
for j = 1, nholds do
  local skey, hkey, ekey = KEYS[kbase + 3 * j - 2], KEYS[kbase + 3 * j - 1], KEYS[kbase + 3 * j]
  local amount = redis.call('HGET', hkey, lease)
  if amount then
    redis.call('HDEL', hkey, lease)
    redis.call('HINCRBY', hkey, HELD_SUM, -tonumber(amount))
  end
  redis.call('ZREM', ekey, lease)
  if spend >= 0 then
    out[j] = redis.call('INCRBY', skey, spend)
    local expire_at = tonumber(ARGV[hbase + 1 + j])
    if expire_at > 0 then redis.call('EXPIREAT', skey, expire_at) end
  end
end
return out
"""
)

# KEYS[1]: spent counter. ARGV: nano-USD, EXPIREAT (0: none). Sets max(current, value).
SEED = """
local current = redis.call('GET', KEYS[1])
if not current or tonumber(current) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
if tonumber(ARGV[2]) > 0 then redis.call('EXPIREAT', KEYS[1], ARGV[2]) end
return 1
"""

# KEYS: lease zsets (concurrency or hold expiry), then hashes only kept alive.
# ARGV: lease_ttl_ms, zset count, the lease member of each zset key.
# XX: a lease already purged (expired, perhaps given away) is never brought back.
RENEW = (
    _COMMON
    + """
local ttl_ms, nzsets = tonumber(ARGV[1]), tonumber(ARGV[2])
local expiry = score(now + ttl_ms / 1000)
for i = 1, #KEYS do
  if i <= nzsets then redis.call('ZADD', KEYS[i], 'XX', expiry, ARGV[i + 2]) end
  redis.call('PEXPIRE', KEYS[i], 2 * ttl_ms)
end
return #KEYS
"""
)
