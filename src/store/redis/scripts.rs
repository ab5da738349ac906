//! The Lua scripts behind every check-and-set that must not be won twice across
//! instances. Each touches keys of one hash tag only, so it runs on a cluster too.

use redis::Script;

pub(super) struct Scripts {
    pub(super) step_accept: Script,
    pub(super) mfa_enable: Script,
    pub(super) backup_consume: Script,
    pub(super) backup_replace: Script,
    pub(super) device_take: Script,
    pub(super) secret_swap: Script,
    pub(super) lock_reserve: Script,
    pub(super) session_index_add: Script,
    pub(super) session_index_take: Script,
}

/// Milliseconds a session stays listed in its user's index after its key's expiry as
/// this node's clock sees it: covers clock drift between cluster nodes, since the key
/// and the index may live on different ones. Listing a dead session costs nothing;
/// dropping a live one would hide it from a revoke.
pub(super) const INDEX_GRACE_MS: u64 = 60_000;

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            // KEYS[1] replay mark; ARGV[1] step. Accept only a later step.
            step_accept: Script::new(
                "local cur = redis.call('GET', KEYS[1])
                 if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
                 redis.call('SET', KEYS[1], ARGV[1]) return 1",
            ),
            // KEYS mfa, pending, backup; ARGV secret, enabled_ms, last_used_ms, hashes...
            mfa_enable: Script::new(
                "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
                 redis.call('HSET', KEYS[1], 'secret', ARGV[1], 'enabled_ms', ARGV[2], 'last_used_ms', ARGV[3])
                 redis.call('DEL', KEYS[2], KEYS[3])
                 for i = 4, #ARGV do redis.call('SADD', KEYS[3], ARGV[i]) end
                 return 1",
            ),
            // KEYS backup; ARGV hash. Remaining count, or -1 when the code was not there.
            backup_consume: Script::new(
                "if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then return redis.call('SCARD', KEYS[1]) end
                 return -1",
            ),
            backup_replace: Script::new(
                "redis.call('DEL', KEYS[1])
                 for i = 1, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
                 return 1",
            ),
            // KEYS device; ARGV user. Take the record only if it is this user's.
            device_take: Script::new(
                "local v = redis.call('GET', KEYS[1])
                 if not v then return false end
                 if cjson.decode(v)['user'] ~= ARGV[1] then return false end
                 redis.call('DEL', KEYS[1]) return v",
            ),
            // KEYS hash; ARGV old, new.
            secret_swap: Script::new(
                "if redis.call('HGET', KEYS[1], 'secret') ~= ARGV[1] then return 0 end
                 redis.call('HSET', KEYS[1], 'secret', ARGV[2]) return 1",
            ),
            // KEYS lock record; ARGV step, now_ms, max_failures, code_max_failures,
            // time to live past the lock's end (0: the record never expires), then the
            // lock durations table.
            // `core::lockout::LockRecord::reserve`, applied atomically (the conformance
            // suite checks the two agree): refuse while locked or blocked, else count
            // the attempt in advance. Returns {granted, failures, locks,
            // locked_until_ms, blocked, imposed}.
            lock_reserve: Script::new(
                "local raw = redis.call('GET', KEYS[1])
                 local f, l, u, b = 0, 0, 0, false
                 if raw then
                   local r = cjson.decode(raw)
                   f = tonumber(r['failures']) or 0
                   l = tonumber(r['locks']) or 0
                   u = tonumber(r['locked_until_ms']) or 0
                   b = r['blocked'] == true
                 end
                 local now = tonumber(ARGV[2])
                 if b then return {0, f, l, u, 1, 0} end
                 if u > now then return {0, f, l, u, 0, 0} end
                 f = math.min(f + 1, 4294967295)
                 local imposed = 0
                 local maxf = tonumber(ARGV[3])
                 if ARGV[1] == 'code' and f >= tonumber(ARGV[4]) then
                   b = true imposed = 1
                 elseif maxf > 0 and f % maxf == 0 then
                   l = math.min(l + 1, 4294967295)
                   u = now + tonumber(ARGV[5 + math.min(l, #ARGV - 5)])
                   imposed = 1
                 end
                 local v = string.format('{\"failures\":%d,\"locks\":%d,\"locked_until_ms\":%d,\"blocked\":%s}',
                   f, l, u, b and 'true' or 'false')
                 local floor = tonumber(ARGV[5])
                 if floor > 0 then redis.call('SET', KEYS[1], v, 'PX', floor + math.max(u - now, 0))
                 else redis.call('SET', KEYS[1], v) end
                 return {1, f, l, u, b and 1 or 0, imposed}",
            ),
            // KEYS a user's session index (sorted set: id -> expiry on this node's
            // clock), the set that indexed sessions before it; ARGV id, ttl_ms,
            // grace_ms, required id ('' = none). Drops the expired members, then lists
            // `id` — unless `required` (the session being rotated away) is no longer
            // listed in either, i.e. a revoke or logout came first. The index itself
            // expires with its last member.
            session_index_add: Script::new(
                "if redis.replicate_commands then redis.replicate_commands() end
                 local t = redis.call('TIME')
                 local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
                 redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
                 if ARGV[4] ~= '' and not redis.call('ZSCORE', KEYS[1], ARGV[4])
                   and not (redis.call('TYPE', KEYS[2])['ok'] == 'set'
                            and redis.call('SISMEMBER', KEYS[2], ARGV[4]) == 1) then return 0 end
                 redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
                 local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
                 redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(top[2]) - now))
                 return 1",
            ),
            // KEYS a user's session index, the set that indexed them before (read and
            // dropped too). Takes every listed id and empties the index in one step:
            // an add lands either before (its id is returned, its session deleted) or
            // after (a sign-in made after the revoke).
            // ARGV[1]: an id to leave listed (and alive), or empty. The kept id never
            // leaves the index, so a revoke racing this call still finds it.
            session_index_take: Script::new(
                "local keep = ARGV[1]
                 local ids = {}
                 for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
                   if m ~= keep then ids[#ids + 1] = m end
                 end
                 local legacy = redis.call('TYPE', KEYS[2])['ok'] == 'set'
                 if legacy then
                   for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
                     if m ~= keep then ids[#ids + 1] = m end
                   end
                 end
                 if keep == '' then
                   redis.call('DEL', KEYS[1], KEYS[2])
                 else
                   for _, m in ipairs(ids) do
                     redis.call('ZREM', KEYS[1], m)
                     if legacy then redis.call('SREM', KEYS[2], m) end
                   end
                 end
                 return ids",
            ),
        }
    }
}
