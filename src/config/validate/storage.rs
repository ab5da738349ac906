//! `[storage]`: the embedded or Redis backend and the encryption key file.

use super::*;

pub(super) fn storage(r: &mut Reader, root: &Table<'_>) -> StorageConfig {
    let t = r.table(
        root,
        "storage",
        &[
            "backend",
            "path",
            "redis_url",
            "redis_mode",
            "redis_nodes",
            "redis_sentinel_master",
            "redis_ca_file",
            "key_prefix",
            "encryption_key_file",
            "timeout",
        ],
    );
    let backend = [Backend::Embedded, Backend::Redis]
        [r.choice(&t, "backend", "embedded", &["embedded", "redis"])];
    let redis_url = r.string(&t, "redis_url", "redis://127.0.0.1:6379/0");
    let redis_mode = [
        RedisMode::Standalone,
        RedisMode::Sentinel,
        RedisMode::Cluster,
    ][r.choice(
        &t,
        "redis_mode",
        "standalone",
        &["standalone", "sentinel", "cluster"],
    )];
    let redis_nodes = r.string_list(&t, "redis_nodes", &[]);
    let redis_sentinel_master = r.string(&t, "redis_sentinel_master", "mymaster");
    let redis_ca_file = r.optional_string(&t, "redis_ca_file").map(PathBuf::from);
    if backend == Backend::Redis {
        let url_ok = |u: &str| u.starts_with("redis://") || u.starts_with("rediss://");
        match redis_mode {
            RedisMode::Standalone if !url_ok(&redis_url) => {
                r.problem(&t.at("redis_url"), "must start with redis:// or rediss://");
            }
            RedisMode::Cluster | RedisMode::Sentinel if redis_nodes.is_empty() => {
                r.problem(
                    &t.at("redis_nodes"),
                    "must list the cluster nodes or sentinels, e.g. [\"redis://10.0.0.1:6379\"]",
                );
            }
            _ => {}
        }
        for (i, n) in redis_nodes.iter().enumerate() {
            if !url_ok(n) {
                r.problem(
                    &format!("{}[{i}]", t.at("redis_nodes")),
                    "must start with redis:// or rediss://",
                );
            }
        }
        if let Some(ca) = &redis_ca_file
            && !ca.is_file()
        {
            r.problem(
                &t.at("redis_ca_file"),
                format!("file {} does not exist", ca.display()),
            );
        }
    }
    let key_prefix = r.string(&t, "key_prefix", "vestibule:");
    if key_prefix.contains(['{', '}', ' ']) {
        r.problem(
            &t.at("key_prefix"),
            "must not contain braces or spaces (braces would break Redis Cluster hash tags)",
        );
    }
    StorageConfig {
        backend,
        path: PathBuf::from(r.string(&t, "path", "data/")),
        redis_url,
        redis_mode,
        redis_nodes,
        redis_sentinel_master,
        redis_ca_file,
        key_prefix,
        encryption_key_file: r
            .optional_string(&t, "encryption_key_file")
            .map(PathBuf::from),
        timeout: r.duration(&t, "timeout", "2s"),
    }
}
