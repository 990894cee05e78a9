//! The Lua scripts: each is the key schema's prelude ([`super::keys::lua_prelude`]), the shared
//! helpers of `lib.lua`, then the script's own file, whose header names its KEYS and ARGV.

use std::sync::LazyLock;

use redis::Script;

use super::keys::lua_prelude;

/// The shared helpers every script starts with.
const LIB: &str = include_str!("scripts/lib.lua");

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(super) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(&format!("{}{LIB}{}", lua_prelude(), include_str!($file)))
        });
    };
}

script!(ADD, "scripts/add.lua");
script!(FETCH, "scripts/fetch.lua");
script!(EXTEND, "scripts/extend.lua");
script!(SETTLE, "scripts/settle.lua");
script!(SETTLE_FETCH, "scripts/settle_fetch.lua");
script!(RECOVER, "scripts/recover.lua");
script!(ADMIN, "scripts/admin.lua");
script!(SCHED_PUT, "scripts/sched_put.lua");
script!(SCHED_FIRE, "scripts/sched_fire.lua");
script!(SCHED_ADMIN, "scripts/sched_admin.lua");
script!(HISTORY, "scripts/history.lua");
