//! The Lua scripts, each prefixed by the shared helpers in `lib.lua`.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(super) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("scripts/lib.lua"),
                include_str!($file)
            ))
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
