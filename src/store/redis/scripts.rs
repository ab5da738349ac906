//! The Lua scripts behind every check-and-set that must not be won twice across
//! instances. Each touches keys of one hash tag only, so it runs on a cluster too.

use redis::Script;

pub(super) struct Scripts {
    pub(super) step_accept: Script,
    pub(super) mfa_enable: Script,
    pub(super) backup_consume: Script,
    pub(super) backup_replace: Script,
    pub(super) device_take: Script,
    pub(super) compare_and_set: Script,
    pub(super) secret_swap: Script,
}

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
            // KEYS k; ARGV expected ('' = absent), new, ttl_ms (0: no expiry).
            compare_and_set: Script::new(
                "local cur = redis.call('GET', KEYS[1]) or ''
                 if cur ~= ARGV[1] then return 0 end
                 if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
                 else redis.call('SET', KEYS[1], ARGV[2]) end
                 return 1",
            ),
            // KEYS hash; ARGV old, new.
            secret_swap: Script::new(
                "if redis.call('HGET', KEYS[1], 'secret') ~= ARGV[1] then return 0 end
                 redis.call('HSET', KEYS[1], 'secret', ARGV[2]) return 1",
            ),
        }
    }
}
