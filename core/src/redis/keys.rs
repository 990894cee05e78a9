//! The Redis key schema, in one place: the Rust side and every Lua script (through the prelude
//! [`lua_prelude`] writes) name keys from here.
//!
//! Every key of a queue starts with `K = PREFIX:{queue}`, so all of them share one hash tag and
//! a script touches one Cluster slot. Below `K`:
//!
//! - one fixed key per structure: `K:wait`, `K:prio`, `K:active`, ... ([`FIXED`]); none of
//!   their names holds a `:`;
//! - three keys per job, the job's id last: `K:j:ID` (its hash), `K:h:ID` (its attempt
//!   history), `K:l:ID` (its log lines); one per schedule, `K:s:ID` (its hash); and one per
//!   minute of history, `K:m:MINUTE` (its counts, see `crate::history`).
//!
//! So no job id, whatever its characters, can name another key of the schema: a per-job key
//! has a `:` after its one-letter kind and a fixed key has none, two kinds differ in their
//! letter, and two keys of one kind differ exactly where their ids do.

/// The fixed keys, as (Lua name, suffix after `K:`).
pub(super) const FIXED: [(&str, &str); 14] = [
    ("id", "id"),
    ("tok", "tok"),
    ("seq", "seq"),
    ("wait", "wait"),
    ("prio", "prio"),
    ("delayed", "delayed"),
    ("active", "active"),
    ("completed", "completed"),
    ("failed", "failed"),
    ("paused", "paused"),
    ("signal", "signal"),
    ("events", "events"),
    ("sched", "sched"),
    ("scheds", "scheds"),
];

/// The per-job (and per-schedule) keys, as (Lua function name, kind letter).
pub(super) const PER_JOB: [(&str, &str); 5] = [
    ("jkey", "j"),
    ("hkey", "h"),
    ("lkey", "l"),
    ("skey", "s"),
    ("mkey", "m"),
];

/// The key prefix of one queue: `PREFIX:{queue}`.
pub(super) fn queue_prefix(prefix: &str, queue: &str) -> String {
    format!("{prefix}:{{{queue}}}")
}

/// The fixed key `name` of the queue whose prefix is `k`.
pub(super) fn fixed(k: &str, name: &str) -> String {
    debug_assert!(FIXED.iter().any(|(_, suffix)| *suffix == name), "{name}");
    format!("{k}:{name}")
}

/// A job's hash key.
pub fn job(k: &str, id: &str) -> String {
    format!("{k}:j:{id}")
}

/// A minute's history key.
pub(super) fn minute(k: &str, minute: u64) -> String {
    format!("{k}:m:{minute}")
}

/// A schedule's hash key.
pub fn schedule(k: &str, id: &str) -> String {
    format!("{k}:s:{id}")
}

/// The Lua every script starts with: `KEY.wait` and the like for the fixed keys' suffixes, and
/// `jkey(K, id)`, `hkey(K, id)`, `lkey(K, id)` for a job's keys.
pub(super) fn lua_prelude() -> String {
    let mut lua = String::from("-- The key schema (core/src/redis/keys.rs).\nlocal KEY = {");
    for (name, suffix) in FIXED {
        lua.push_str(&format!(" {name} = ':{suffix}',"));
    }
    lua.push_str(" }\n");
    for (function, kind) in PER_JOB {
        lua.push_str(&format!(
            "local function {function}(K, id) return K .. ':{kind}:' .. id end\n"
        ));
    }
    lua
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_fixed_key_can_be_named_by_a_job_id() {
        for (_, suffix) in FIXED {
            assert!(!suffix.contains(':'), "{suffix}");
            assert!(!suffix.is_empty());
        }
        let kinds: Vec<&str> = PER_JOB.iter().map(|(_, kind)| *kind).collect();
        let mut unique = kinds.clone();
        unique.dedup();
        assert_eq!(unique.len(), kinds.len());
        assert!(kinds.iter().all(|k| !k.contains(':')));
    }
}
