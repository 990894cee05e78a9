//! `#[cacheable]` on an example service, as the seed's `@Cacheable` is used on `UserService`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stagehand_core::cache::{Cache, CacheError, MemoryLimit, Ttl, cacheable};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Profile {
    id: String,
    name: String,
}

#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error("no user {0}")]
    NoUser(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

struct UserService {
    cache: Cache,
    reads: Arc<AtomicUsize>,
}

impl UserService {
    #[cacheable(prefix = "user:profile", ttl = "1h", key = user_id)]
    async fn profile(&self, user_id: &str) -> Result<Profile, AppError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        // Let the other callers arrive while the "database" answers.
        tokio::task::yield_now().await;
        if user_id == "ghost" {
            return Err(AppError::NoUser(user_id.to_string()));
        }
        Ok(Profile {
            id: user_id.to_string(),
            name: format!("user {user_id}"),
        })
    }

    /// The seed's default key: the arguments as JSON.
    #[cacheable(prefix = "wardrobe", ttl = 60)]
    async fn wardrobe(&self, user_id: &str, season: u32) -> Result<Vec<String>, AppError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(vec![format!("{user_id}-{season}-coat")])
    }
}

fn service() -> Arc<UserService> {
    Arc::new(UserService {
        cache: Cache::memory(MemoryLimit::Entries(1000)),
        reads: Arc::default(),
    })
}

#[tokio::test]
async fn concurrent_calls_run_the_method_once_and_share_its_value() {
    let users = service();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let users = Arc::clone(&users);
            tokio::spawn(async move { users.profile("7").await.expect("profile") })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.expect("join").name, "user 7");
    }
    assert_eq!(users.reads.load(Ordering::SeqCst), 1);
    // Stored under the seed's key, for an hour.
    let stored: Option<Profile> = users.cache.get("user:profile:7").await.expect("get");
    assert_eq!(stored.map(|p| p.id).as_deref(), Some("7"));
    match users.cache.ttl("user:profile:7").await.expect("ttl") {
        Ttl::Expires(left) => {
            assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3600))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_default_key_is_the_arguments_as_json() {
    let users = service();
    users.wardrobe("7", 2026).await.expect("wardrobe");
    users.wardrobe("7", 2026).await.expect("wardrobe");
    assert_eq!(users.reads.load(Ordering::SeqCst), 1);
    let stored: Option<Vec<String>> = users
        .cache
        .get(r#"wardrobe:["7",2026]"#)
        .await
        .expect("get");
    assert_eq!(stored, Some(vec!["7-2026-coat".to_string()]));
}

#[tokio::test]
async fn a_failing_method_caches_nothing_and_its_error_is_the_source() {
    let users = service();
    let err = users.profile("ghost").await.expect_err("no such user");
    let AppError::Cache(CacheError::Load { source, .. }) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(source.to_string(), "no user ghost");
    assert!(
        users
            .cache
            .get::<Profile>("user:profile:ghost")
            .await
            .expect("get")
            .is_none()
    );
    users.profile("ghost").await.expect_err("tried again");
    assert_eq!(users.reads.load(Ordering::SeqCst), 2);
}
