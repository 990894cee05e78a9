//! The cache's behaviour on each strategy: memory, and Redis on a `redis-server` of the test's
//! own. Each check runs on both (the `strategies!` list below).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::eventually;
use common::redis::RedisServer;
use stagehand_core::cache::{
    Cache, CacheError, CacheOptions, Invalidation, Lease, MemoryLimit, MemoryTier, RedisTier,
    RedisTierOptions, Ttl, TwoTier,
};
use stagehand_core::redis::Target;

/// A cache on one strategy, and what keeps its store alive.
struct Subject {
    cache: Cache,
    server: Option<RedisServer>,
    two_tier: bool,
}

impl Subject {
    async fn memory(options: CacheOptions) -> Subject {
        let tier = Arc::new(MemoryTier::new(MemoryLimit::Entries(1_000_000)));
        Subject {
            cache: Cache::new("memory", tier, options),
            server: None,
            two_tier: false,
        }
    }

    async fn redis(options: CacheOptions) -> Subject {
        let server = RedisServer::start();
        let cache = redis_cache(&server, options).await;
        Subject {
            cache,
            server: Some(server),
            two_tier: false,
        }
    }

    async fn two_tier(options: CacheOptions) -> Subject {
        let server = RedisServer::start();
        let cache = two_tier_cache(&server, options).await.0;
        Subject {
            cache,
            server: Some(server),
            two_tier: true,
        }
    }

    /// Another cache on the same store, as another process would have (memory: the same one).
    async fn sibling(&self, options: CacheOptions) -> Cache {
        match &self.server {
            Some(server) if self.two_tier => two_tier_cache(server, options).await.0,
            Some(server) => redis_cache(server, options).await,
            None => self.cache.clone(),
        }
    }
}

async fn redis_tier(server: &RedisServer) -> RedisTier {
    let client = redis::Client::open(server.url()).expect("client");
    RedisTier::new(&Target::single(client), RedisTierOptions::default())
        .await
        .expect("the Redis tier")
}

async fn redis_cache(server: &RedisServer, options: CacheOptions) -> Cache {
    Cache::new("redis", Arc::new(redis_tier(server).await), options)
}

async fn two_tier_cache(server: &RedisServer, options: CacheOptions) -> (Cache, TwoTier) {
    let tier = TwoTier::new(
        redis_tier(server).await,
        MemoryLimit::Entries(100_000),
        Duration::from_secs(600),
    );
    (
        Cache::new("two-tier", Arc::new(tier.clone()), options),
        tier,
    )
}

macro_rules! strategies {
    ($($check:ident),* $(,)?) => {
        mod on_memory {
            $(#[tokio::test] async fn $check() { super::$check(super::Subject::memory(Default::default()).await).await; })*
        }
        mod on_redis {
            $(#[tokio::test] async fn $check() { super::$check(super::Subject::redis(Default::default()).await).await; })*
        }
        mod on_two_tier {
            $(#[tokio::test] async fn $check() { super::$check(super::Subject::two_tier(Default::default()).await).await; })*
        }
    };
}

strategies!(
    values_round_trip_typed,
    values_expire_and_ttl_tells_missing_from_persistent,
    delete_says_whether_the_key_existed,
    delete_pattern_deletes_exactly_the_matching_keys,
    increments_under_concurrency_are_exact,
    tags_invalidate_exactly_their_keys,
    get_or_set_runs_the_loader_once_for_concurrent_callers,
    a_failed_load_reaches_every_waiter_and_stores_nothing,
    early_refresh_reloads_a_value_before_it_expires,
    bad_input_is_refused_and_changes_nothing,
);

async fn values_round_trip_typed(s: Subject) {
    let c = &s.cache;
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Profile {
        name: String,
        sizes: Vec<u32>,
    }
    let ada = Profile {
        name: "Ada ✓".into(),
        sizes: vec![38, 40],
    };
    c.set("user:profile:7", &ada, None).await.expect("set");
    assert_eq!(
        c.get::<Profile>("user:profile:7").await.expect("get"),
        Some(ada)
    );
    assert_eq!(c.get::<Profile>("user:profile:8").await.expect("get"), None);
    let err = c
        .get::<u32>("user:profile:7")
        .await
        .expect_err("not a number");
    assert!(matches!(err, CacheError::Decode { .. }), "{err}");
    let stats = c.stats();
    assert_eq!((stats.hits, stats.misses, stats.errors), (2, 1, 0));
}

async fn values_expire_and_ttl_tells_missing_from_persistent(s: Subject) {
    let c = &s.cache;
    c.set("forever", &1, None).await.expect("set");
    c.set("brief", &2, Some(Duration::from_millis(80)))
        .await
        .expect("set");
    c.set("long", &3, Some(Duration::from_secs(600)))
        .await
        .expect("set");
    assert_eq!(c.ttl("forever").await.expect("ttl"), Ttl::Persistent);
    assert_eq!(c.ttl("nothing").await.expect("ttl"), Ttl::Missing);
    match c.ttl("long").await.expect("ttl") {
        Ttl::Expires(left) => {
            assert!(left <= Duration::from_secs(600) && left > Duration::from_secs(500))
        }
        other => panic!("{other:?}"),
    }
    eventually("the brief value to expire", || async {
        (c.get::<u32>("brief").await.expect("get").is_none()).then_some(())
    })
    .await;
    assert_eq!(c.ttl("brief").await.expect("ttl"), Ttl::Missing);
    assert!(
        c.expire("forever", Duration::from_secs(60))
            .await
            .expect("expire")
    );
    assert!(
        !c.expire("nothing", Duration::from_secs(60))
            .await
            .expect("expire")
    );
    assert!(matches!(
        c.ttl("forever").await.expect("ttl"),
        Ttl::Expires(_)
    ));
    assert_eq!(c.get::<u32>("forever").await.expect("get"), Some(1));
}

async fn delete_says_whether_the_key_existed(s: Subject) {
    let c = &s.cache;
    c.set("k", &"v", None).await.expect("set");
    assert!(c.delete("k").await.expect("delete"));
    assert!(!c.delete("k").await.expect("delete"));
    assert_eq!(c.get::<String>("k").await.expect("get"), None);
}

async fn delete_pattern_deletes_exactly_the_matching_keys(s: Subject) {
    let c = &s.cache;
    for i in 0..1_500 {
        c.set(&format!("user:{i}:profile"), &i, None)
            .await
            .expect("set");
    }
    for key in [
        "users:1:profile",
        "user:1:profiles",
        "other",
        "user*:x",
        "user:[1]:profile",
    ] {
        c.set(key, &0, None).await.expect("set");
    }
    c.set_tagged("user:7:profile", &7, None, &["t".into()])
        .await
        .expect("set tagged");
    assert_eq!(
        c.delete_pattern("user:*:profile").await.expect("pattern"),
        1_501
    );
    for key in ["users:1:profile", "user:1:profiles", "other", "user*:x"] {
        assert_eq!(c.get::<u32>(key).await.expect("get"), Some(0), "{key}");
    }
    // A glob character in a pattern can be escaped.
    c.set("user*:y", &0, None).await.expect("set");
    assert_eq!(c.delete_pattern("user\\*:*").await.expect("pattern"), 2);
    assert_eq!(c.get::<u32>("other").await.expect("get"), Some(0));
    assert_eq!(
        c.invalidate_tag("t").await.expect("tag"),
        0,
        "the tagged key went with the pattern"
    );
}

async fn increments_under_concurrency_are_exact(s: Subject) {
    let c = &s.cache;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    c.increment("hits", 3).await.expect("increment");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("join");
    }
    assert_eq!(c.get::<i64>("hits").await.expect("get"), Some(3_000));
    assert_eq!(c.increment("hits", -3_001).await.expect("increment"), -1);
    c.set("name", &"ada", None).await.expect("set");
    let err = c.increment("name", 1).await.expect_err("not an integer");
    assert!(
        matches!(err, CacheError::NotAnInteger(ref k) if k == "name"),
        "{err}"
    );
    c.set("big", &i64::MAX, None).await.expect("set");
    assert!(c.increment("big", 1).await.is_err(), "overflow is refused");
    assert_eq!(c.get::<i64>("big").await.expect("get"), Some(i64::MAX));
}

async fn tags_invalidate_exactly_their_keys(s: Subject) {
    let c = &s.cache;
    let tagged = |tags: &[&str]| tags.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    c.set_tagged("a", &1, None, &tagged(&["wardrobe", "user:7"]))
        .await
        .expect("set");
    c.set_tagged("b", &2, None, &tagged(&["wardrobe"]))
        .await
        .expect("set");
    c.set_tagged("c", &3, None, &tagged(&["user:7"]))
        .await
        .expect("set");
    c.set("d", &4, None).await.expect("set");
    // Stored again without the tag: no longer in it.
    c.set("b", &22, None).await.expect("set");
    assert_eq!(c.invalidate_tag("wardrobe").await.expect("tag"), 1);
    assert_eq!(c.get::<u32>("a").await.expect("get"), None);
    assert_eq!(c.get::<u32>("b").await.expect("get"), Some(22));
    assert_eq!(c.get::<u32>("c").await.expect("get"), Some(3));
    assert_eq!(c.invalidate_tag("wardrobe").await.expect("tag"), 0);
    // Deleted: no longer in its tag either.
    c.set_tagged("e", &5, None, &tagged(&["user:7"]))
        .await
        .expect("set");
    c.delete("e").await.expect("delete");
    c.set("e", &55, None).await.expect("set");
    assert_eq!(c.invalidate_tag("user:7").await.expect("tag"), 1);
    assert_eq!(c.get::<u32>("c").await.expect("get"), None);
    assert_eq!(c.get::<u32>("e").await.expect("get"), Some(55));
    assert_eq!(c.get::<u32>("d").await.expect("get"), Some(4));
}

async fn get_or_set_runs_the_loader_once_for_concurrent_callers(s: Subject) {
    // Three caches on one store stand for three processes (on memory, one cache).
    let caches = [
        s.cache.clone(),
        s.sibling(CacheOptions::default()).await,
        s.sibling(CacheOptions::default()).await,
    ];
    let loads = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..100)
        .map(|i| {
            let cache = caches[i % 3].clone();
            let (loads, entered) = (Arc::clone(&loads), Arc::clone(&entered));
            tokio::spawn(async move {
                entered.fetch_add(1, Ordering::SeqCst);
                cache
                    .get_or_set("wardrobe:7", Some(Duration::from_secs(60)), || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        // Hold the load until every caller has asked.
                        while entered.load(Ordering::SeqCst) < 100 {
                            tokio::task::yield_now().await;
                        }
                        Ok::<_, std::io::Error>(vec!["coat".to_string(), "scarf".to_string()])
                    })
                    .await
                    .expect("get_or_set")
            })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.expect("join"), vec!["coat", "scarf"]);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "the loader ran once");
    let counted = caches.iter().map(|c| c.stats().loads).max();
    assert_eq!(counted, Some(1), "the stats count the load");
}

async fn a_failed_load_reaches_every_waiter_and_stores_nothing(s: Subject) {
    let c = &s.cache;
    let entered = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let (c, entered) = (c.clone(), Arc::clone(&entered));
            tokio::spawn(async move {
                entered.fetch_add(1, Ordering::SeqCst);
                c.get_or_set::<u32, _, _, _>("k", None, || async move {
                    while entered.load(Ordering::SeqCst) < 10 {
                        tokio::task::yield_now().await;
                    }
                    Err(std::io::Error::other("the database is down"))
                })
                .await
            })
        })
        .collect();
    for caller in callers {
        let err = caller.await.expect("join").expect_err("the load failed");
        assert!(err.to_string().contains("the database is down"), "{err}");
    }
    assert_eq!(c.get::<u32>("k").await.expect("get"), None);
    assert_eq!(c.stats().loads, 1);
}

async fn early_refresh_reloads_a_value_before_it_expires(s: Subject) {
    // A beta this large makes every read of a loaded key a refresh.
    let options = CacheOptions {
        early_refresh_beta: 1e12,
        ..CacheOptions::default()
    };
    let c = s.sibling(options).await;
    let c = if s.server.is_some() {
        c
    } else {
        Cache::new(
            "memory",
            Arc::new(MemoryTier::new(MemoryLimit::Entries(100))),
            CacheOptions {
                early_refresh_beta: 1e12,
                ..CacheOptions::default()
            },
        )
    };
    let ttl = Some(Duration::from_secs(600));
    let first: u32 = c
        .get_or_set("k", ttl, || async { Ok::<_, std::io::Error>(1) })
        .await
        .expect("load");
    let second: u32 = c
        .get_or_set("k", ttl, || async { Ok::<_, std::io::Error>(2) })
        .await
        .expect("refresh");
    assert_eq!((first, second), (1, 2));
    let stats = c.stats();
    assert_eq!((stats.loads, stats.early_refreshes), (2, 1));
    assert_eq!(c.get::<u32>("k").await.expect("get"), Some(2));
}

async fn bad_input_is_refused_and_changes_nothing(s: Subject) {
    let c = &s.cache;
    let long = "k".repeat(1025);
    for result in [
        c.set("", &1, None).await,
        c.set(&long, &1, None).await,
        c.set("k", &1, Some(Duration::ZERO)).await,
        c.set("k", &1, Some(Duration::from_secs(400 * 365 * 24 * 3600)))
            .await,
        c.set_tagged("k", &1, None, &["".into()]).await,
        c.set_tagged(
            "k",
            &1,
            None,
            &(0..33).map(|i| i.to_string()).collect::<Vec<_>>(),
        )
        .await,
    ] {
        assert!(matches!(result, Err(CacheError::Invalid(_))), "{result:?}");
    }
    assert_eq!(c.ttl("k").await.expect("ttl"), Ttl::Missing);
    assert!(matches!(
        c.delete_pattern("").await,
        Err(CacheError::Invalid(_))
    ));
}

#[tokio::test]
async fn stale_values_are_served_when_the_loader_fails() {
    let options = CacheOptions {
        stale_for: Duration::from_secs(600),
        early_refresh_beta: 0.0,
        ..CacheOptions::default()
    };
    for s in [
        Subject::memory(options.clone()).await,
        Subject::redis(options.clone()).await,
    ] {
        let c = &s.cache;
        let ttl = Some(Duration::from_millis(50));
        let v: u32 = c
            .get_or_set("k", ttl, || async { Ok::<_, std::io::Error>(1) })
            .await
            .expect("load");
        assert_eq!(v, 1);
        eventually("the value to pass its TTL", || async {
            (c.ttl("k").await.expect("ttl") == Ttl::Missing).then_some(())
        })
        .await;
        assert_eq!(
            c.get::<u32>("k").await.expect("get"),
            None,
            "a stale value is not a hit"
        );
        let v: u32 = c
            .get_or_set("k", ttl, || async { Err(std::io::Error::other("down")) })
            .await
            .expect("the stale value");
        assert_eq!(v, 1);
        assert_eq!(c.stats().stale_served, 1);
        let v: u32 = c
            .get_or_set("k", ttl, || async { Ok::<_, std::io::Error>(2) })
            .await
            .expect("reload");
        assert_eq!(v, 2);
    }
}

#[tokio::test]
async fn a_dead_holders_lease_runs_out_and_another_process_loads() {
    let server = RedisServer::start();
    let options = CacheOptions {
        lease: Duration::from_millis(300),
        ..CacheOptions::default()
    };
    let dead = redis_cache(&server, options.clone()).await;
    // A process took the lease and died before storing anything.
    assert!(matches!(
        dead.tier().lease("k", Duration::from_millis(300)).await,
        Ok(Lease::Granted(_))
    ));
    let alive = redis_cache(&server, options).await;
    let v: u32 = alive
        .get_or_set("k", None, || async { Ok::<_, std::io::Error>(9) })
        .await
        .expect("load");
    assert_eq!(v, 9);
    assert_eq!(alive.stats().loads, 1);
}

#[tokio::test]
async fn with_redis_down_each_process_loads_once_and_counts_errors() {
    let mut server = RedisServer::start();
    let caches = [
        redis_cache(&server, CacheOptions::default()).await,
        redis_cache(&server, CacheOptions::default()).await,
    ];
    server.kill();
    let loads = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..40)
        .map(|i| {
            let cache = caches[i % 2].clone();
            let (loads, entered) = (Arc::clone(&loads), Arc::clone(&entered));
            tokio::spawn(async move {
                entered.fetch_add(1, Ordering::SeqCst);
                cache
                    .get_or_set("k", None, || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        while entered.load(Ordering::SeqCst) < 40 {
                            tokio::task::yield_now().await;
                        }
                        Ok::<_, std::io::Error>(5u32)
                    })
                    .await
                    .expect("served without the store")
            })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.expect("join"), 5);
    }
    assert!(
        loads.load(Ordering::SeqCst) <= 2,
        "at most once per process"
    );
    for cache in &caches {
        let stats = cache.stats();
        assert!(stats.errors > 0 && stats.misses == 0, "{stats:?}");
    }
}

#[tokio::test]
async fn tag_indexes_do_not_outlive_their_keys() {
    let server = RedisServer::start();
    let cache = redis_cache(&server, CacheOptions::default()).await;
    for i in 0..500 {
        cache
            .set_tagged(
                &format!("k{i}"),
                &i,
                Some(Duration::from_millis(100)),
                &["t".into()],
            )
            .await
            .expect("set");
    }
    let mut conn = server.conn().await;
    eventually("the tag index to expire with its keys", || {
        let mut conn = conn.clone();
        async move {
            let n: u64 = redis::cmd("EXISTS")
                .arg("cache-tag:t")
                .query_async(&mut conn)
                .await
                .ok()?;
            (n == 0).then_some(())
        }
    })
    .await;
    // A long-lived member keeps the index; expired members are reaped as the index is written.
    cache
        .set_tagged("keep", &1, None, &["t".into()])
        .await
        .expect("set");
    for i in 0..60 {
        cache
            .set_tagged(
                &format!("x{i}"),
                &i,
                Some(Duration::from_millis(20)),
                &["t".into()],
            )
            .await
            .expect("set");
    }
    eventually("the short-lived members to expire", || async {
        (cache.ttl("x59").await.expect("ttl") == Ttl::Missing).then_some(())
    })
    .await;
    cache
        .set_tagged("keep2", &1, None, &["t".into()])
        .await
        .expect("set");
    let members: u64 = redis::cmd("ZCARD")
        .arg("cache-tag:t")
        .query_async(&mut conn)
        .await
        .expect("zcard");
    assert_eq!(members, 2, "only the live members are left");

    let memory = MemoryTier::new(MemoryLimit::Entries(100));
    let cache = Cache::new("memory", Arc::new(memory.clone()), CacheOptions::default());
    for i in 0..500 {
        cache
            .set_tagged(
                &format!("k{i}"),
                &i,
                Some(Duration::from_millis(1)),
                &["t".into()],
            )
            .await
            .expect("set");
    }
    eventually("the memory tag index to empty", || async {
        memory.sync().await;
        (memory.tag_members("t") == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_write_in_one_process_evicts_the_key_from_the_others_memory() {
    let mut server = RedisServer::start();
    let (a, a_tier) = two_tier_cache(&server, CacheOptions::default()).await;
    let (b, b_tier) = two_tier_cache(&server, CacheOptions::default()).await;
    a.set("look", &"v1", None).await.expect("set");
    assert_eq!(
        b.get::<String>("look").await.expect("get").as_deref(),
        Some("v1")
    );
    // Without announcements, B's memory keeps serving what it read.
    a.set("look", &"v2", None).await.expect("set");
    assert_eq!(
        b.get::<String>("look").await.expect("get").as_deref(),
        Some("v1")
    );
    // A's announcements reach B (the pub/sub layer's job; here, directly).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Invalidation>();
    a_tier.on_change(Arc::new(move |inv| {
        let _ = tx.send(inv);
    }));
    a.set("look", &"v3", None).await.expect("set");
    let announced = rx.recv().await.expect("an announcement");
    assert!(
        announced.memory_only && announced.keys == ["look"],
        "{announced:?}"
    );
    b_tier.evict_local(&announced).await.expect("evict");
    assert_eq!(
        b.get::<String>("look").await.expect("get").as_deref(),
        Some("v3")
    );
    let tiers = b.stats().tiers;
    assert_eq!(
        tiers.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["memory", "redis"]
    );
    // Memory keeps serving hits while Redis is down; a miss there is an error, not a miss.
    server.kill();
    assert_eq!(
        b.get::<String>("look")
            .await
            .expect("a memory hit")
            .as_deref(),
        Some("v3")
    );
    assert!(b.get::<String>("other").await.is_err());
    assert_eq!(b.stats().errors, 1);
}

#[tokio::test]
async fn delete_pattern_over_100k_keys_works_in_batches_and_spares_the_rest() {
    let server = RedisServer::start();
    let cache = redis_cache(&server, CacheOptions::default()).await;
    let mut conn = server.conn().await;
    for chunk in 0..10 {
        let mut fill = redis::pipe();
        for i in chunk * 10_000..(chunk + 1) * 10_000 {
            fill.set(format!("cache:session:{i}"), "1").ignore();
            if i % 10 == 0 {
                fill.set(format!("cache:user:{i}"), "1").ignore();
            }
        }
        let _: () = fill.query_async(&mut conn).await.expect("fill");
    }
    // Watch the commands Redis runs: SCAN and scripts, never KEYS.
    let before: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    assert!(!before.contains("cmdstat_keys"));
    assert_eq!(
        cache.delete_pattern("session:*").await.expect("pattern"),
        100_000
    );
    let left: u64 = redis::cmd("DBSIZE")
        .query_async(&mut conn)
        .await
        .expect("DBSIZE");
    assert_eq!(left, 10_000, "only the user keys are left");
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    assert!(!stats.contains("cmdstat_keys"), "KEYS was used");
    let scans: u64 = stats
        .lines()
        .find(|l| l.starts_with("cmdstat_scan:"))
        .and_then(|l| l.split("calls=").nth(1)?.split(',').next()?.parse().ok())
        .expect("SCAN calls");
    assert!(scans >= 100, "{scans} SCAN steps: bounded batches");
}
