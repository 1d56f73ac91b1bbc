//! The REST API driven without a server: `tower::ServiceExt::oneshot` over the router, on a
//! SQLite database in a temporary directory, with the time set by a `ManualClock`. What the
//! Python suite covers only end to end: which key may call what (401/403), how errors map to
//! the one error shape, cursor pagination, idempotency keys, the failed-key throttle, tenant
//! isolation, and quota thresholds evaluated at chosen times.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;
use turnpike_api::clock::ManualClock;
use turnpike_api::domain::quota;
use turnpike_api::ice::Listeners;
use turnpike_api::keys::hash_key;
use turnpike_api::state::Shared;
use turnpike_api::{router, sync, ApiConfig, AppState};
use turnpike_proto::Directory;
use turnpike_store::{AnyStore, Counters, Store, TenantId, UsageDelta};

const ADMIN: &str = "tpa_test_admin_key_for_the_router_tests";
/// 2026-11-30T22:00:00Z: two hours before a new month.
const NOW: i64 = 1_796_076_000;
/// 2026-12-01T00:00:00Z.
const DECEMBER: i64 = 1_796_083_200;
/// 2026-11-01T00:00:00Z.
const NOVEMBER: i64 = 1_793_491_200;
const CLIENT: &str = "192.0.2.10:40000";

struct Api {
    state: Shared,
    router: Router,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    /// Asserts the status and returns the body.
    #[track_caller]
    fn ok(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        self.body
    }

    /// Asserts Metered's error shape: this status and `{field: text}` alone.
    #[track_caller]
    fn metered(self, status: StatusCode, field: &str, text: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body, json!({ field: text }), "{}", self.body);
    }

    /// Asserts the one error shape with this status and code; returns the message.
    #[track_caller]
    fn error(self, status: StatusCode, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        let e = &self.body["error"];
        assert_eq!(
            self.body.as_object().map(|o| o.len()),
            Some(1),
            "{}",
            self.body
        );
        assert_eq!(e.as_object().map(|o| o.len()), Some(2), "{}", self.body);
        assert_eq!(e["code"], code, "{}", self.body);
        e["message"]
            .as_str()
            .expect("the message is a string")
            .to_string()
    }
}

/// A request: method, path, key (`Authorization: Bearer`), JSON body, extra headers, client.
struct Call<'a> {
    method: Method,
    path: &'a str,
    key: Option<&'a str>,
    body: Option<Value>,
    headers: Vec<(&'a str, &'a str)>,
    client: &'a str,
}

fn call(method: Method, path: &str) -> Call<'_> {
    Call {
        method,
        path,
        key: None,
        body: None,
        headers: Vec::new(),
        client: CLIENT,
    }
}

impl<'a> Call<'a> {
    fn key(mut self, key: &'a str) -> Self {
        self.key = Some(key);
        self
    }
    fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
    fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }
    fn from(mut self, client: &'a str) -> Self {
        self.client = client;
        self
    }
}

async fn start(cfg: ApiConfig) -> Api {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("control.db").display());
    let store = AnyStore::connect(&url).await.expect("a fresh SQLite store");
    let clock = Arc::new(ManualClock::new(NOW));
    // One UDP listener unless the test names its own.
    let listeners = if cfg.listeners.udp.is_empty() {
        Listeners {
            udp: vec!["192.0.2.1:3478".parse().expect("an address")],
            ..Listeners::default()
        }
    } else {
        cfg.listeners.clone()
    };
    let cfg = ApiConfig {
        admin_key_hash: Some(hash_key(ADMIN)),
        listeners,
        ..cfg
    };
    let state = Arc::new(AppState::new(
        store,
        Arc::new(Directory::new()),
        cfg,
        clock.clone(),
    ));
    sync::reload(&state)
        .await
        .expect("the first directory load");
    Api {
        router: router(state.clone()),
        state,
        clock,
        dir,
    }
}

impl Api {
    async fn send(&self, c: Call<'_>) -> Answer {
        let mut req = Request::builder().method(c.method).uri(c.path);
        if let Some(k) = c.key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        if c.body.is_some() {
            req = req.header("content-type", "application/json");
        }
        for (n, v) in c.headers {
            req = req.header(n, v);
        }
        let body = c
            .body
            .map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let mut req = req.body(body).expect("a valid request");
        let client: SocketAddr = c.client.parse().expect("a client address");
        req.extensions_mut().insert(ConnectInfo(client));
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("a body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Creates a tenant; returns its id and secret key.
    async fn tenant(&self, name: &str) -> (String, String) {
        let t = self
            .send(
                call(Method::POST, "/v1/tenants")
                    .key(ADMIN)
                    .json(json!({"name": name})),
            )
            .await
            .ok(StatusCode::CREATED);
        (
            t["tenant"]["id"].as_str().expect("an id").to_string(),
            t["secret_key"].as_str().expect("a key").to_string(),
        )
    }

    /// Creates a credential of the tenant with `key`; returns it.
    async fn credential(&self, key: &str, body: Value) -> Value {
        self.send(call(Method::POST, "/v1/credentials").key(key).json(body))
            .await
            .ok(StatusCode::CREATED)["credential"]
            .clone()
    }
}

#[tokio::test]
async fn callers_need_the_right_kind_of_key() {
    let api = start(ApiConfig::default()).await;
    let (tid, tenant) = api.tenant("acme").await;
    let (other_id, _) = api.tenant("globex").await;

    // No key, an unknown key, another scheme: 401.
    api.send(call(Method::GET, "/v1/tenants"))
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    api.send(call(Method::GET, "/v1/tenants").key("tps_not-a-real-key"))
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    api.send(call(Method::GET, "/v1/tenants").header("authorization", "Basic abc"))
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");

    // AdminCaller: the admin key only.
    api.send(call(Method::GET, "/v1/tenants").key(ADMIN))
        .await
        .ok(StatusCode::OK);
    let m = api
        .send(call(Method::GET, "/v1/tenants").key(&tenant))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(m, "this endpoint needs the admin key");
    api.send(call(Method::GET, "/v1/deny-list").key(&tenant))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");

    // TenantCaller: a tenant's secret key only.
    let m = api
        .send(call(Method::GET, "/v1/credentials").key(ADMIN))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    assert!(m.contains("tenant's secret key"), "{m}");
    let cred = api.credential(&tenant, json!({"label": "web"})).await;
    let cid = cred["id"].as_str().expect("an id");

    // A publishable key: ICE servers from its origins, nothing else.
    let path = format!("/v1/credentials/{cid}/publishable-keys");
    let pk = api
        .send(
            call(Method::POST, &path)
                .key(&tenant)
                .json(json!({"allowed_origins": ["https://app.example.com"]})),
        )
        .await
        .ok(StatusCode::CREATED)["key"]
        .as_str()
        .expect("a key")
        .to_string();
    let m = api
        .send(call(Method::GET, "/v1/credentials").key(&pk))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(m, "a publishable key may only fetch ICE servers");
    let ok = api
        .send(
            call(Method::GET, "/v1/ice-servers")
                .key(&pk)
                .header("origin", "https://app.example.com"),
        )
        .await;
    assert_eq!(
        ok.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    let ice = ok.ok(StatusCode::OK);
    // STUN, then TURN with a credential scoped to the stored one.
    let username = ice["iceServers"][1]["username"].as_str().unwrap_or("");
    assert!(username.contains(cid), "scoped to the credential: {ice}");
    api.send(
        call(Method::GET, "/v1/ice-servers")
            .key(&pk)
            .header("origin", "https://evil.example.com"),
    )
    .await
    .error(StatusCode::FORBIDDEN, "forbidden");
    // The key may come as `?apiKey=` too (BearerOrApiKey).
    let q = format!("/v1/ice-servers?apiKey={pk}&format=array");
    let arr = api
        .send(call(Method::GET, &q).header("origin", "https://app.example.com"))
        .await
        .ok(StatusCode::OK);
    assert!(arr.is_array(), "{arr}");
    // The admin key may not mint ICE servers (Caller, then the domain says who may).
    api.send(call(Method::GET, "/v1/ice-servers").key(ADMIN))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");

    // Caller: a tenant reads itself, not another tenant; the admin reads any.
    api.send(call(Method::GET, &format!("/v1/tenants/{tid}")).key(&tenant))
        .await
        .ok(StatusCode::OK);
    api.send(call(Method::GET, &format!("/v1/tenants/{other_id}")).key(&tenant))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    api.send(call(Method::GET, &format!("/v1/tenants/{other_id}")).key(ADMIN))
        .await
        .ok(StatusCode::OK);

    // Metered's `?secretKey=` (MeteredKey).
    let q = format!("/api/v2/turn/credentials?secretKey={tenant}");
    let list = api.send(call(Method::GET, &q)).await.ok(StatusCode::OK);
    assert_eq!(list["pagination"]["total_records"], 1);
    // A publishable key is not an app's secret key: Metered's 401 and body.
    let q = format!("/api/v2/turn/credentials?secretKey={pk}");
    api.send(call(Method::GET, &q)).await.metered(
        StatusCode::UNAUTHORIZED,
        "message",
        "Invalid secretKey",
    );
}

#[tokio::test]
async fn errors_map_to_the_one_shape() {
    let api = start(ApiConfig::default()).await;
    let (_, tenant) = api.tenant("acme").await;
    let post = |body: Value| {
        call(Method::POST, "/v1/credentials")
            .key(&tenant)
            .json(body)
    };
    // DomainError::Invalid: 422 invalid_field, naming the field.
    let m = api
        .send(post(json!({"label": "x".repeat(101)})))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(m.contains("`label`"), "{m}");
    api.send(post(json!({"expires_in": 10, "expires_at": NOW + 10})))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    // StoreError::Conflict: 409.
    api.send(post(json!({"username": "alice"})))
        .await
        .ok(StatusCode::CREATED);
    api.send(post(json!({"username": "alice"})))
        .await
        .error(StatusCode::CONFLICT, "conflict");
    // StoreError::NotFound: 404.
    api.send(call(Method::GET, "/v1/credentials/cred_nope").key(&tenant))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    // The Metered endpoints answer in Metered's shape instead (see the metered_* tests).
    let q = format!("/api/v1/turn/credential/enable?secretKey={tenant}");
    api.send(call(Method::POST, &q).json(json!({"username": "nobody"})))
        .await
        .metered(StatusCode::UNAUTHORIZED, "message", "Credential not found");
    // Extractor rejections in the same shape.
    let bad = api
        .send(
            call(Method::POST, "/v1/credentials")
                .key(&tenant)
                .header("content-type", "application/json"),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    api.send(
        call(Method::POST, "/v1/credentials")
            .key(&tenant)
            .header("content-type", "text/plain"),
    )
    .await
    .error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    api.send(call(Method::GET, "/v1/credentials?limit=abc").key(&tenant))
        .await
        .error(StatusCode::BAD_REQUEST, "bad_query");
    api.send(call(Method::GET, "/v1/credentials?limit=0").key(&tenant))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    // StoreError::DatabaseLost: the SQLite file removed under the server: 503 on writes,
    // reads still answer.
    std::fs::remove_file(api.dir.path().join("control.db")).expect("the database file");
    api.send(post(json!({"label": "after"})))
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE, "database_lost");
    api.send(call(Method::GET, "/v1/credentials").key(&tenant))
        .await
        .ok(StatusCode::OK);
}

#[tokio::test]
async fn pagination_follows_cursors_to_the_end() {
    let api = start(ApiConfig::default()).await;
    let (_, tenant) = api.tenant("acme").await;
    let mut made = Vec::new();
    for _ in 0..5 {
        let c = api.credential(&tenant, json!({"label": "bulk"})).await;
        made.push(c["id"].as_str().expect("an id").to_string());
    }
    api.credential(&tenant, json!({"label": "other"})).await;
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/credentials?label=bulk&limit=2&cursor={c}"),
            None => "/v1/credentials?label=bulk&limit=2".to_string(),
        };
        let page = api
            .send(call(Method::GET, &path).key(&tenant))
            .await
            .ok(StatusCode::OK);
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|i| i["id"].as_str().unwrap_or("").to_string()),
        );
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    made.sort();
    assert_eq!(seen, made, "every credential once, in id order");
    assert_eq!(pages, 3);
    // Expired credentials are left out unless asked for (by the clock).
    api.credential(&tenant, json!({"label": "short", "expires_in": 60}))
        .await;
    api.clock.advance(61);
    let page = api
        .send(call(Method::GET, "/v1/credentials?label=short").key(&tenant))
        .await
        .ok(StatusCode::OK);
    assert_eq!(page["items"], json!([]));
    let page = api
        .send(
            call(
                Method::GET,
                "/v1/credentials?label=short&include_expired=true",
            )
            .key(&tenant),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(page["items"][0]["expired"], true);
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_response() {
    let api = start(ApiConfig::default()).await;
    let (_, tenant) = api.tenant("acme").await;
    let (_, other) = api.tenant("globex").await;
    let create = |key: &'static str, label: &str| {
        call(Method::POST, "/v1/credentials")
            .header("idempotency-key", key)
            .json(json!({ "label": label }))
    };
    let a = api
        .send(create("k-1", "idem").key(&tenant))
        .await
        .ok(StatusCode::CREATED);
    let b = api
        .send(create("k-1", "idem").key(&tenant))
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(a, b, "the same response, password included");
    let list = api
        .send(call(Method::GET, "/v1/credentials?label=idem").key(&tenant))
        .await
        .ok(StatusCode::OK);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    // Keys are per API key: another tenant's same Idempotency-Key creates its own.
    let c = api
        .send(create("k-1", "idem").key(&other))
        .await
        .ok(StatusCode::CREATED);
    assert_ne!(c["credential"]["id"], a["credential"]["id"]);
    // A failed create does not hold its key.
    let long = "x".repeat(101);
    api.send(create("k-2", &long).key(&tenant))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    api.send(create("k-2", "fine").key(&tenant))
        .await
        .ok(StatusCode::CREATED);
    // Keys of 1 to 255 characters.
    let huge = "k".repeat(256);
    api.send(
        call(Method::POST, "/v1/credentials")
            .key(&tenant)
            .header("idempotency-key", &huge)
            .json(json!({})),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn failed_keys_are_throttled_per_client_address() {
    let cfg = ApiConfig {
        auth_failures_per_minute: 3,
        ..ApiConfig::default()
    };
    let api = start(cfg).await;
    let (_, tenant) = api.tenant("acme").await;
    let from = |c| call(Method::GET, "/v1/keys").from(c);
    for i in 0..3 {
        let guess = format!("tps_guess_{i}");
        api.send(from("198.51.100.7:1000").key(&guess))
            .await
            .error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let r = api.send(from("198.51.100.7:1001").key("tps_guess_3")).await;
    let wait: u64 = r.headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    r.error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Even a valid key waits (no lookup at all), on the metered endpoints too.
    api.send(from("198.51.100.7:1002").key(&tenant))
        .await
        .error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let q = format!("/api/v2/turn/credentials?secretKey={tenant}");
    let r = api
        .send(call(Method::GET, &q).from("198.51.100.7:1003"))
        .await;
    assert!(r.headers.contains_key("retry-after"));
    r.metered(
        StatusCode::TOO_MANY_REQUESTS,
        "message",
        "too many failed API key attempts from this address; retry later",
    );
    // A missing key is not a failure; another address is not affected.
    api.send(from("198.51.100.8:1000").key(&tenant))
        .await
        .ok(StatusCode::OK);
    api.send(from("198.51.100.8:1000"))
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn each_key_has_its_rate_limit() {
    let cfg = ApiConfig {
        rate_burst: 2,
        rate_per_sec: 1,
        ..ApiConfig::default()
    };
    let api = start(cfg).await;
    let (_, tenant) = api.tenant("acme").await;
    let codes = [
        api.send(call(Method::GET, "/v1/keys").key(&tenant))
            .await
            .status,
        api.send(call(Method::GET, "/v1/keys").key(&tenant))
            .await
            .status,
    ];
    assert!(codes.contains(&StatusCode::OK), "{codes:?}");
    let mut limited = None;
    for _ in 0..3 {
        let r = api.send(call(Method::GET, "/v1/keys").key(&tenant)).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the bucket runs out");
    assert!(r.headers.contains_key("retry-after"));
    r.error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // The admin key has its own bucket.
    api.send(call(Method::GET, "/v1/tenants").key(ADMIN))
        .await
        .ok(StatusCode::OK);
}

#[tokio::test]
async fn tenants_never_reach_each_other() {
    let api = start(ApiConfig::default()).await;
    let (_, a) = api.tenant("a").await;
    let (_, b) = api.tenant("b").await;
    let cred = api.credential(&a, json!({"label": "mine"})).await;
    let cid = cred["id"].as_str().expect("an id");
    let one = format!("/v1/credentials/{cid}");
    api.send(call(Method::GET, &one).key(&b))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    api.send(
        call(Method::PATCH, &one)
            .key(&b)
            .json(json!({"enabled": false})),
    )
    .await
    .error(StatusCode::NOT_FOUND, "not_found");
    api.send(call(Method::DELETE, &one).key(&b))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    let quota = format!("/v1/credentials/{cid}/quota");
    api.send(
        call(Method::PUT, &quota)
            .key(&b)
            .json(json!({"max_allocations": 1})),
    )
    .await
    .error(StatusCode::NOT_FOUND, "not_found");
    let pk = format!("/v1/credentials/{cid}/publishable-keys");
    api.send(
        call(Method::POST, &pk)
            .key(&b)
            .json(json!({"allowed_origins": ["*"]})),
    )
    .await
    .error(StatusCode::NOT_FOUND, "not_found");
    let deleted = api
        .send(call(Method::DELETE, "/v1/credentials?label=mine").key(&b))
        .await
        .ok(StatusCode::OK);
    assert_eq!(deleted["deleted"], 0);
    let list = api
        .send(call(Method::GET, "/v1/credentials").key(&b))
        .await
        .ok(StatusCode::OK);
    assert_eq!(list["items"], json!([]));
    // A's ephemeral username cannot be revoked by B.
    let eph = api
        .send(
            call(Method::POST, "/v1/ephemeral-credentials")
                .key(&a)
                .json(json!({"user_id": "u1"})),
        )
        .await
        .ok(StatusCode::CREATED);
    api.send(
        call(Method::POST, "/v1/revocations")
            .key(&b)
            .json(json!({"username": eph["username"]})),
    )
    .await
    .error(StatusCode::NOT_FOUND, "not_found");
    // A's credential is untouched, and B's audit log does not name it.
    let mine = api
        .send(call(Method::GET, &one).key(&a))
        .await
        .ok(StatusCode::OK);
    assert_eq!(mine["enabled"], true);
    let audit = api
        .send(call(Method::GET, "/v1/audit").key(&b))
        .await
        .ok(StatusCode::OK);
    assert!(!audit.to_string().contains(cid), "{audit}");
}

/// Adds `bytes` of client→server traffic to the tenant's usage in the hour of `at`.
async fn use_bytes(state: &AppState, tenant_id: &str, bytes: i64, at: i64) {
    let delta = UsageDelta {
        tenant_id: tenant_id.into(),
        hour: at / 3600,
        counters: Counters {
            c2s_bytes: bytes,
            ..Counters::default()
        },
        ..UsageDelta::default()
    };
    state.store.add_usage(&[delta]).await.expect("usage added");
}

async fn alerts(api: &Api, key: &str) -> Value {
    api.send(call(Method::GET, "/v1/alerts").key(key))
        .await
        .ok(StatusCode::OK)
}

#[tokio::test]
async fn quota_thresholds_fire_once_per_period_and_lift_in_the_next() {
    let api = start(ApiConfig::default()).await;
    let (tid, tenant) = api.tenant("acme").await;
    let body = json!({"bytes_per_period": 1000, "thresholds": [
        {"percent": 50, "action": "notify"},
        {"percent": 100, "action": "refuse"},
    ]});
    api.send(call(Method::PUT, "/v1/quota").key(&tenant).json(body))
        .await
        .ok(StatusCode::OK);
    let refused = |api: &Api| {
        let snapshot = api.state.directory.load();
        snapshot.tenant_limits.get(&tid).is_some_and(|l| l.refuse)
    };

    // 60% used: the notify threshold fires, nothing is refused.
    use_bytes(&api.state, &tid, 600, NOW).await;
    quota::evaluate(&api.state, None).await;
    let fired = alerts(&api, &tenant).await;
    assert_eq!(fired.as_array().map(Vec::len), Some(1), "{fired}");
    assert_eq!(fired[0]["percent"], 50);
    assert_eq!(fired[0]["period_start"], NOVEMBER);
    assert!(!refused(&api));

    // 100% used: refuse applies, and the directory says so.
    use_bytes(&api.state, &tid, 400, NOW).await;
    quota::evaluate(&api.state, None).await;
    assert!(refused(&api));
    let current = api
        .send(call(Method::GET, "/v1/usage/current").key(&tenant))
        .await
        .ok(StatusCode::OK);
    assert_eq!(current["period_start"], NOVEMBER);
    assert_eq!(current["percent_used"], 100.0);

    // Evaluated again in the same period: no second alert.
    quota::evaluate(&api.state, None).await;
    assert_eq!(
        alerts(&api, &tenant).await.as_array().map(Vec::len),
        Some(2)
    );

    // A new month (the clock moves): usage starts from zero, the refusal lifts by itself.
    api.clock.set(DECEMBER + 60);
    quota::evaluate(&api.state, None).await;
    assert!(!refused(&api));
    let current = api
        .send(call(Method::GET, "/v1/usage/current").key(&tenant))
        .await
        .ok(StatusCode::OK);
    assert_eq!(current["period_start"], DECEMBER);
    assert_eq!(current["usage"]["total_bytes"], 0);

    // The thresholds fire again in the new period, once each.
    use_bytes(&api.state, &tid, 1000, DECEMBER + 60).await;
    quota::evaluate(&api.state, None).await;
    quota::evaluate(&api.state, None).await;
    assert!(refused(&api));
    let fired = alerts(&api, &tenant).await;
    let december: Vec<_> = fired
        .as_array()
        .expect("a list")
        .iter()
        .filter(|a| a["period_start"] == DECEMBER)
        .collect();
    assert_eq!(december.len(), 2, "{fired}");

    // Deleting the quota lifts what it applied.
    api.send(call(Method::DELETE, "/v1/quotas/tenant").key(&tenant))
        .await
        .ok(StatusCode::NO_CONTENT);
    assert!(!refused(&api));
}

/// Adds `bytes` of one credential's client→server traffic to the tenant's usage at `at`.
async fn credential_bytes(
    state: &AppState,
    tenant_id: &str,
    credential_id: &str,
    bytes: i64,
    at: i64,
) {
    let delta = UsageDelta {
        tenant_id: tenant_id.into(),
        credential_id: credential_id.to_string(),
        hour: at / 3600,
        counters: Counters {
            c2s_bytes: bytes,
            ..Counters::default()
        },
        ..UsageDelta::default()
    };
    state.store.add_usage(&[delta]).await.expect("usage added");
}

/// `path` with `?name=value` (or `&name=value`) appended.
fn with(path: &str, name: &str, value: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{name}={value}")
}

#[tokio::test]
async fn metered_credentials_answer_as_metered_does() {
    let api = start(ApiConfig::default()).await;
    let (_, secret) = api.tenant("acme").await;
    let cred = |sk: &str| with("/api/v1/turn/credential", "secretKey", sk);

    // M1: keys in the query; Metered's errors.
    api.send(call(Method::POST, "/api/v1/turn/credential").json(json!({})))
        .await
        .metered(StatusCode::BAD_REQUEST, "message", "secretKey is required");
    api.send(call(Method::POST, &cred("tps_wrong")).json(json!({})))
        .await
        .metered(StatusCode::UNAUTHORIZED, "message", "Invalid secretKey");
    for bad in [json!(-5), json!(0), json!("60"), json!(1.5)] {
        api.send(call(Method::POST, &cred(&secret)).json(json!({"expiryInSeconds": bad})))
            .await
            .metered(
                StatusCode::BAD_REQUEST,
                "message",
                "please enter a positive integer value for expiryInSeconds",
            );
    }
    // Without a body (Metered's tutorial), then with expiry and label.
    let plain = api
        .send(call(Method::POST, &cred(&secret)))
        .await
        .ok(StatusCode::OK);
    let mut keys: Vec<_> = plain
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    assert_eq!(keys, ["apiKey", "password", "username"]);
    let c = api
        .send(
            call(Method::POST, &cred(&secret)).json(json!({"expiryInSeconds": 60, "label": "web"})),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        (c["expiryInSeconds"].clone(), c["label"].clone()),
        (json!(60), json!("web"))
    );
    let username = c["username"].as_str().expect("a username").to_string();

    // M2: the list, `all` as a presence flag brings back expired ones.
    let list = with("/api/v2/turn/credentials", "secretKey", &secret);
    let l = api.send(call(Method::GET, &list)).await.ok(StatusCode::OK);
    assert_eq!(l["pagination"]["total_records"], 2, "{l}");
    api.clock.advance(120);
    let l = api.send(call(Method::GET, &list)).await.ok(StatusCode::OK);
    assert_eq!(l["pagination"]["total_records"], 1, "{l}");
    for all in ["all", "all=true", "all=1"] {
        let l = api
            .send(call(Method::GET, &format!("{list}&{all}")))
            .await
            .ok(StatusCode::OK);
        assert_eq!(l["pagination"]["total_records"], 2, "{all}: {l}");
        let expired: Vec<_> = l["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter(|d| d["expired"] == true)
            .collect();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0]["expiryInSeconds"], 0);
    }
    let l = api
        .send(call(Method::GET, &format!("{list}&all=false")))
        .await
        .ok(StatusCode::OK);
    assert_eq!(l["pagination"]["total_records"], 1, "{l}");

    // M4 / M5: the username in the body; "not found" is 401; Metered's messages.
    let enable = with("/api/v1/turn/credential/enable", "secretKey", &secret);
    let disable = with("/api/v1/turn/credential/disable", "secretKey", &secret);
    let u = plain["username"].as_str().expect("a username").to_string();
    api.send(call(Method::POST, &enable).json(json!({})))
        .await
        .metered(
            StatusCode::BAD_REQUEST,
            "message",
            "`username` field missing",
        );
    api.send(call(Method::POST, &enable).json(json!({"username": "nobody"})))
        .await
        .metered(StatusCode::UNAUTHORIZED, "message", "Credential not found");
    api.send(call(Method::POST, &disable).json(json!({"username": "nobody"})))
        .await
        .metered(StatusCode::UNAUTHORIZED, "message", "credential not found");
    api.send(call(Method::POST, &enable).json(json!({"username": u})))
        .await
        .metered(
            StatusCode::BAD_REQUEST,
            "message",
            "Credential is already enabled",
        );
    let bad_disable = with("/api/v1/turn/credential/disable", "secretKey", "tps_wrong");
    api.send(call(Method::POST, &bad_disable).json(json!({"username": u})))
        .await
        .metered(
            StatusCode::BAD_REQUEST,
            "message",
            "Invalid request. App not found",
        );
    let m = api
        .send(call(Method::POST, &disable).json(json!({"username": u})))
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        m,
        json!({"message": "Turn credential disabled successfully"})
    );
    api.send(call(Method::POST, &disable).json(json!({"username": u})))
        .await
        .metered(
            StatusCode::BAD_REQUEST,
            "message",
            "Credential is already disabled",
        );
    let m = api
        .send(call(Method::POST, &enable).json(json!({"username": u})))
        .await
        .ok(StatusCode::OK);
    assert_eq!(m, json!({"message": "Credential enabled successfully"}));

    // M6: DELETE with the username in the body (the query form too).
    let del = cred(&secret);
    let gone = api
        .send(call(Method::DELETE, &del).json(json!({"username": u})))
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        gone,
        json!({"success": true, "message": "credential removed"})
    );
    api.send(call(Method::DELETE, &del).json(json!({"username": u})))
        .await
        .metered(
            StatusCode::BAD_REQUEST,
            "message",
            "credential of the specified username is not found",
        );
    api.send(call(Method::DELETE, &with(&del, "username", &username)))
        .await
        .ok(StatusCode::OK);

    // M7: only unexpired credentials with the label go.
    for expiry in [None, None, Some(10)] {
        let body = match expiry {
            Some(e) => json!({"label": "batch", "expiryInSeconds": e}),
            None => json!({"label": "batch"}),
        };
        api.send(call(Method::POST, &cred(&secret)).json(body))
            .await
            .ok(StatusCode::OK);
    }
    api.clock.advance(20);
    let by_label = with("/api/v2/turn/credential/by_label", "secretKey", &secret);
    api.send(call(Method::DELETE, &by_label)).await.metered(
        StatusCode::BAD_REQUEST,
        "message",
        "label must be a non-empty string of less than 100 characters",
    );
    api.send(call(
        Method::DELETE,
        &with(&by_label, "label", &"x".repeat(100)),
    ))
    .await
    .metered(
        StatusCode::BAD_REQUEST,
        "message",
        "label must be a non-empty string of less than 100 characters",
    );
    api.send(call(
        Method::DELETE,
        "/api/v2/turn/credential/by_label?secretKey=tps_x&label=batch",
    ))
    .await
    .metered(StatusCode::BAD_REQUEST, "message", "invalid secretKey");
    let n = api
        .send(call(Method::DELETE, &with(&by_label, "label", "batch")))
        .await
        .ok(StatusCode::OK);
    assert_eq!(n, json!({"deleted": 2}));
    let left = api
        .send(call(Method::GET, &format!("{list}&all&label=batch")))
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        left["pagination"]["total_records"], 1,
        "the expired one stays: {left}"
    );

    // Turnpike's own /v1 API keeps its one error shape.
    api.send(call(Method::GET, "/v1/credentials/cred_nope").key(&secret))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn metered_ice_array_has_one_url_per_entry_and_metered_errors() {
    let api = start(ApiConfig::default()).await;
    let (_, secret) = api.tenant("acme").await;
    let c = api
        .send(call(
            Method::POST,
            &with("/api/v1/turn/credential", "secretKey", &secret),
        ))
        .await
        .ok(StatusCode::OK);
    let key = c["apiKey"].as_str().expect("an apiKey");
    let ice = with("/api/v1/turn/credentials", "apiKey", key);

    api.send(call(Method::GET, "/api/v1/turn/credentials"))
        .await
        .metered(StatusCode::BAD_REQUEST, "error", "Please specify API Key");
    api.send(call(
        Method::GET,
        "/api/v1/turn/credentials?apiKey=tpp_nope",
    ))
    .await
    .metered(StatusCode::UNAUTHORIZED, "error", "Invalid API Key");
    let list = api.send(call(Method::GET, &ice)).await.ok(StatusCode::OK);
    let entries = list.as_array().expect("a bare array");
    assert_eq!(entries.len(), 2, "{list}");
    assert_eq!(entries[0], json!({"urls": "stun:192.0.2.1:3478"}));
    assert_eq!(entries[1]["urls"], "turn:192.0.2.1:3478?transport=udp");
    assert!(entries[1]["username"].is_string() && entries[1]["credential"].is_string());
    // Regions: Metered's names are all served by this node; others are refused.
    for region in ["global", "europe_west", "standard"] {
        let r = api
            .send(call(Method::GET, &with(&ice, "region", region)))
            .await
            .ok(StatusCode::OK);
        assert_eq!(r.as_array().map(Vec::len), Some(2), "{region}");
    }
    let r = api
        .send(call(Method::GET, &with(&ice, "region", "mars")))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("global")),
        "{}",
        r.body
    );
    // A disabled credential's apiKey mints nothing.
    let disable = with("/api/v1/turn/credential/disable", "secretKey", &secret);
    api.send(call(Method::POST, &disable).json(json!({"username": c["username"]})))
        .await
        .ok(StatusCode::OK);
    let r = api.send(call(Method::GET, &ice)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body["error"].is_string(), "{}", r.body);
}

#[tokio::test]
async fn ice_lists_name_the_address_the_client_reached_when_the_host_was_detected() {
    let listeners = Listeners {
        udp: vec!["0.0.0.0:3478".parse().expect("an address")],
        tcp: vec!["0.0.0.0:3478".parse().expect("an address")],
        ..Listeners::default()
    };
    let detected = ApiConfig {
        public_host: Some("198.51.100.10".into()),
        host_header_ips: vec![
            "192.0.2.55".parse().expect("an address"),
            "2001:db8::5".parse().expect("an address"),
        ],
        listeners: listeners.clone(),
        ..ApiConfig::default()
    };
    let api = start(detected).await;
    let (_, secret) = api.tenant("acme").await;
    let c = api
        .send(call(
            Method::POST,
            &with("/api/v1/turn/credential", "secretKey", &secret),
        ))
        .await
        .ok(StatusCode::OK);
    let ice = with(
        "/api/v1/turn/credentials",
        "apiKey",
        c["apiKey"].as_str().expect("a key"),
    );
    for (host, url) in [
        ("192.0.2.55:8080", "stun:192.0.2.55:3478"),
        ("192.0.2.55", "stun:192.0.2.55:3478"),
        ("[2001:db8::5]:443", "stun:[2001:db8::5]:3478"),
        // Not one of ours, or a name: the detected address.
        ("203.0.113.9:8080", "stun:198.51.100.10:3478"),
        ("evil.example.com", "stun:198.51.100.10:3478"),
    ] {
        let r = api
            .send(call(Method::GET, &ice).header("host", host))
            .await
            .ok(StatusCode::OK);
        assert_eq!(r[0]["urls"], url, "{host}: {r}");
        assert_eq!(
            r[2]["urls"],
            url.replace("stun:", "turn:") + "?transport=tcp",
            "{host}: {r}"
        );
    }
}

#[tokio::test]
async fn own_ice_servers_carry_the_credentials_expiry() {
    let api = start(ApiConfig::default()).await;
    let (_, secret) = api.tenant("acme").await;
    let w3c = api
        .send(call(Method::GET, "/v1/ice-servers?ttl=600").key(&secret))
        .await
        .ok(StatusCode::OK);
    assert_eq!(w3c["ttl"], 600);
    assert_eq!(w3c["expiresAt"], NOW + 600);
    let rest = api
        .send(call(Method::GET, "/v1/ice-servers?ttl=600&format=turn-rest").key(&secret))
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        (rest["ttl"].clone(), rest["expires_at"].clone()),
        (json!(600), json!(NOW + 600))
    );
}

#[tokio::test]
async fn metered_usage_by_date_and_by_user() {
    let api = start(ApiConfig::default()).await;
    let (tid, secret) = api.tenant("acme").await;
    let c = api
        .send(
            call(
                Method::POST,
                &with("/api/v1/turn/credential", "secretKey", &secret),
            )
            .json(json!({"label": "web"})),
        )
        .await
        .ok(StatusCode::OK);
    let cid = api
        .state
        .store
        .credential_by_username(
            &tid.as_str().into(),
            c["username"].as_str().expect("a username"),
        )
        .await
        .expect("the store")
        .expect("the credential")
        .id;
    credential_bytes(&api.state, &tid, &cid, 2_000_000_000, NOW).await;
    credential_bytes(&api.state, &tid, &cid, 500_000_000, NOVEMBER + 86_400).await;
    // Last month does not count.
    credential_bytes(&api.state, &tid, &cid, 7, NOVEMBER - 3600).await;

    let u = api
        .send(call(
            Method::GET,
            &with("/api/v1/turn/current_usage", "secretKey", &secret),
        ))
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        u,
        json!({"quotaInGB": 0.0, "usageInGB": 2.5, "overageInGB": 0.0})
    );
    api.send(
        call(Method::PUT, "/v1/quota")
            .key(&secret)
            .json(json!({"bytes_per_period": 2_000_000_000})),
    )
    .await
    .ok(StatusCode::OK);
    let u = api
        .send(call(
            Method::GET,
            &with("/api/v1/turn/current_usage", "secretKey", &secret),
        ))
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        u,
        json!({"quotaInGB": 2.0, "usageInGB": 2.5, "overageInGB": 0.5})
    );

    // M9: every day of November up to today (the 30th).
    let by_date = with("/api/v1/turn/current_usage_by_date", "secretKey", &secret);
    api.send(call(
        Method::GET,
        "/api/v1/turn/current_usage_by_date?secretKey=tps_x",
    ))
    .await
    .metered(StatusCode::UNAUTHORIZED, "message", "Invalid secretKey");
    let days = api
        .send(call(Method::GET, &by_date))
        .await
        .ok(StatusCode::OK);
    let days = days.as_array().expect("an array");
    assert_eq!(days.len(), 30);
    assert_eq!(days[0], json!({"date": "2026-11-01", "usageInGB": 0.0}));
    assert_eq!(days[1], json!({"date": "2026-11-02", "usageInGB": 0.5}));
    assert_eq!(days[29], json!({"date": "2026-11-30", "usageInGB": 2.0}));

    // M10 and the archived M10a.
    let by_user = api
        .send(call(
            Method::GET,
            &with("/api/v2/turn/current_usage_by_user", "secretKey", &secret),
        ))
        .await
        .ok(StatusCode::OK);
    assert_eq!(by_user["has_more"], false);
    assert_eq!(by_user["data"][0]["username"], c["username"]);
    assert_eq!(by_user["data"][0]["label"], "web");
    assert_eq!(by_user["data"][0]["usageInGB"], 2.5);
    let v1 = api
        .send(call(
            Method::GET,
            &with("/api/v1/turn/current_usage_by_user", "apiKey", &secret),
        ))
        .await
        .ok(StatusCode::OK);
    assert_eq!(v1, json!([{"username": c["username"], "usageInGB": 2.5}]));
    api.send(call(Method::GET, "/api/v1/turn/current_usage_by_user"))
        .await
        .metered(StatusCode::BAD_REQUEST, "error", "Please specify API Key");
    let pk = c["apiKey"].as_str().expect("a key");
    api.send(call(
        Method::GET,
        &with("/api/v1/turn/current_usage_by_user", "apiKey", pk),
    ))
    .await
    .metered(StatusCode::UNAUTHORIZED, "error", "Invalid API Key");
}

#[tokio::test]
async fn metered_projects_are_child_tenants_with_their_own_keys() {
    let api = start(ApiConfig::default()).await;
    let (app_id, secret) = api.tenant("app").await;
    let (_, other) = api.tenant("other").await;
    let create = with("/api/v2/turn/project", "secretKey", &secret);

    // P1: checks, in Metered's shape.
    api.send(call(Method::POST, "/api/v2/turn/project").json(json!({"projectName": "p"})))
        .await
        .metered(StatusCode::BAD_REQUEST, "message", "secretKey is required");
    api.send(
        call(Method::POST, "/api/v2/turn/project?secretKey=tps_x")
            .json(json!({"projectName": "p"})),
    )
    .await
    .metered(
        StatusCode::BAD_REQUEST,
        "message",
        "invalid secretKey app not found",
    );
    for (body, needle) in [
        (json!({}), "projectName is required"),
        (json!({"projectName": "x".repeat(100)}), "less than 100"),
        (json!({"projectName": "p", "quotaInBytes": 1000}), "1 MiB"),
        (
            json!({"projectName": "p", "webhookUrl": "http://example.com/h"}),
            "https",
        ),
        (
            json!({"projectName": "p", "webhookUrl": "https://127.0.0.1/h"}),
            "public address",
        ),
        (
            json!({"projectName": "p", "webhookUrl": "https://169.254.169.254/latest"}),
            "public address",
        ),
        (
            json!({"projectName": "p", "notificationEmails": vec!["a@example.com"; 11]}),
            "at most 10",
        ),
        (
            json!({"projectName": "p", "notificationEmails": ["not an address"]}),
            "not an email",
        ),
        (
            json!({"projectName": "p", "quotaExceededAction": "explode"}),
            "notify, none or disable",
        ),
    ] {
        let r = api
            .send(call(Method::POST, &create).json(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        let m = r.body["message"].as_str().unwrap_or_default();
        assert!(m.contains(needle), "{body}: {m}");
        assert_eq!(r.body.as_object().map(|o| o.len()), Some(1));
    }
    let p = api
        .send(call(Method::POST, &create).json(json!({
            "projectName": "alpha", "quotaInBytes": 2 << 20, "quotaExceededAction": "NOTIFY_ONLY",
            "notificationEmails": ["ops@example.com", "dev@example.com"]})))
        .await
        .ok(StatusCode::OK);
    let pid = TenantId::from(p["_id"].as_str().expect("an id"));
    let pkey = p["apiKey"].as_str().expect("a project key").to_string();
    assert_eq!(p["projectName"], "alpha");
    assert_eq!(p["quotaInBytes"], 2 << 20);
    assert_eq!(p["quotaExceededAction"], "notify");
    assert_eq!(p["webhookUrl"], Value::Null);
    assert_eq!(
        p["notificationEmails"],
        json!(["ops@example.com", "dev@example.com"])
    );
    assert_eq!(p["created"], "2026-11-30T22:00:00.000Z");
    assert!(pkey.starts_with("tpk_"), "{pkey}");
    // The project is a tenant whose parent is the app, with the quota and thresholds mapped.
    let t = api.state.store.get_tenant(&pid).await.expect("a tenant");
    assert_eq!(t.parent_id.as_deref(), Some(app_id.as_str()));
    let q = api
        .state
        .store
        .list_quotas(Some(&pid))
        .await
        .expect("quotas");
    assert_eq!(q[0].bytes_per_period, Some(2 << 20));
    assert_eq!(
        quota::thresholds(&q[0])
            .iter()
            .map(|t| (t.percent, t.action))
            .collect::<Vec<_>>(),
        vec![(80, quota::Action::Notify), (100, quota::Action::Notify)]
    );
    let n = api
        .state
        .store
        .get_notifications(&pid)
        .await
        .expect("settings")
        .expect("some");
    assert_eq!(n.webhook_format, turnpike_store::WebhookFormat::Metered);
    // Names are unique within the app, not across apps.
    api.send(call(Method::POST, &create).json(json!({"projectName": "alpha"})))
        .await
        .metered(
            StatusCode::BAD_REQUEST,
            "message",
            "project name already exists",
        );
    api.send(
        call(
            Method::POST,
            &with("/api/v2/turn/project", "secretKey", &other),
        )
        .json(json!({"projectName": "alpha"})),
    )
    .await
    .ok(StatusCode::OK);

    // P2 lists the app's projects only, without keys.
    let list = api
        .send(call(
            Method::GET,
            &with("/api/v2/turn/projects", "secretKey", &secret),
        ))
        .await
        .ok(StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["_id"], pid.as_str());
    assert!(list[0].get("apiKey").is_none());

    // P3: partial update; `disable` maps to refuse at 100 %.
    let one = |k: &str, sk: &str| with(&format!("/api/v2/turn/project/{pid}{k}"), "secretKey", sk);
    let u = api
        .send(
            call(Method::PUT, &one("", &secret))
                .json(json!({"projectName": "beta", "quotaExceededAction": "disable"})),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        (
            u["projectName"].clone(),
            u["quotaExceededAction"].clone(),
            u["quotaInBytes"].clone()
        ),
        (json!("beta"), json!("disable"), json!(2 << 20))
    );
    api.send(call(Method::PUT, &one("", &other)).json(json!({"projectName": "x"})))
        .await
        .metered(StatusCode::BAD_REQUEST, "message", "Project not found");
    api.send(
        call(
            Method::PUT,
            &with(
                "/api/v2/turn/project/507f1f77bcf86cd799439011",
                "secretKey",
                &secret,
            ),
        )
        .json(json!({})),
    )
    .await
    .metered(StatusCode::BAD_REQUEST, "message", "Invalid projectId");

    // P6 with either key; the project key does nothing else.
    let pk = |k: &str, key: &str| {
        with(
            &format!("/api/v2/turn/project/{pid}{k}"),
            "projectApiKey",
            key,
        )
    };
    let c1 = api
        .send(
            call(Method::POST, &pk("/credential", &pkey))
                .json(json!({"label": "l1", "expiryInSeconds": 3600})),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(c1["label"], "l1");
    let c2 = api
        .send(call(Method::POST, &one("/credential", &secret)).json(json!({"label": "l2"})))
        .await
        .ok(StatusCode::OK);
    api.send(call(Method::POST, &one("/credential", &other)).json(json!({})))
        .await
        .metered(StatusCode::BAD_REQUEST, "message", "Project not found");
    api.send(call(Method::POST, &pk("/credential", "tpk_nope")).json(json!({})))
        .await
        .metered(StatusCode::UNAUTHORIZED, "message", "Invalid projectApiKey");
    api.send(
        call(
            Method::POST,
            &with("/api/v1/turn/credential", "secretKey", &pkey),
        )
        .json(json!({})),
    )
    .await
    .metered(StatusCode::UNAUTHORIZED, "message", "Invalid secretKey");
    api.send(call(
        Method::GET,
        &with("/api/v2/turn/projects", "secretKey", &pkey),
    ))
    .await
    .metered(
        StatusCode::BAD_REQUEST,
        "message",
        "invalid secretKey app not found",
    );
    api.send(call(Method::GET, "/v1/credentials").key(&pkey))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    // The project's credentials are its own, not the app's; their apiKey fetches ICE servers.
    let app_list = api
        .send(call(
            Method::GET,
            &with("/api/v2/turn/credentials", "secretKey", &secret),
        ))
        .await
        .ok(StatusCode::OK);
    assert_eq!(app_list["pagination"]["total_records"], 0);
    let ice = api
        .send(call(
            Method::GET,
            &with(
                "/api/v1/turn/credentials",
                "apiKey",
                c1["apiKey"].as_str().expect("a key"),
            ),
        ))
        .await
        .ok(StatusCode::OK);
    assert!(ice[1]["username"].is_string(), "{ice}");

    // P7: 50 a page, `_id` and `project` on each.
    for i in 0..49 {
        api.send(
            call(Method::POST, &pk("/credential", &pkey))
                .json(json!({"label": format!("bulk{}", i % 2)})),
        )
        .await
        .ok(StatusCode::OK);
    }
    let page1 = api
        .send(call(Method::GET, &pk("/credentials", &pkey)))
        .await
        .ok(StatusCode::OK);
    assert_eq!(page1["data"].as_array().map(Vec::len), Some(50));
    assert_eq!(page1["pagination"]["total_records"], 51);
    assert_eq!(page1["pagination"]["next_page"], 2);
    assert_eq!(page1["data"][0]["project"], pid.as_str());
    let page2 = api
        .send(call(
            Method::GET,
            &format!("{}&page=2", pk("/credentials", &pkey)),
        ))
        .await
        .ok(StatusCode::OK);
    assert_eq!(page2["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(page2["pagination"]["prev_page"], 1);
    let l2 = api
        .send(call(
            Method::GET,
            &format!("{}&label=l2", pk("/credentials", &pkey)),
        ))
        .await
        .ok(StatusCode::OK);
    assert_eq!(l2["data"][0]["username"], c2["username"]);

    // P10–P13: usage of the project's users.
    let by_name = |u: &Value| {
        let state = api.state.clone();
        let pid = pid.clone();
        let u = u.as_str().expect("a username").to_string();
        async move {
            state
                .store
                .credential_by_username(&pid, &u)
                .await
                .expect("the store")
                .expect("a credential")
                .id
        }
    };
    let id1 = by_name(&c1["username"]).await;
    credential_bytes(&api.state, &pid, &id1, 1 << 20, NOW).await;
    let page1_users: Vec<String> = page1["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|d| d["_id"].as_str().expect("an id").to_string())
        .collect();
    for id in page1_users.iter().filter(|id| **id != *id1).take(25) {
        credential_bytes(&api.state, &pid, id, 10, NOW).await;
    }
    let usage = api
        .send(call(Method::GET, &pk("/current_usage", &pkey)))
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        usage,
        json!({"quotaInBytes": 2 << 20, "usageInBytes": (1 << 20) + 250, "overageInBytes": 0})
    );
    let days = api
        .send(call(Method::GET, &one("/current_usage_by_date", &secret)))
        .await
        .ok(StatusCode::OK);
    assert_eq!(days.as_array().map(Vec::len), Some(30));
    assert_eq!(
        days[29],
        json!({"date": "2026-11-30", "usageInBytes": (1 << 20) + 250})
    );
    let users = api
        .send(call(Method::GET, &pk("/current_usage_by_user", &pkey)))
        .await
        .ok(StatusCode::OK);
    assert_eq!(users["data"].as_array().map(Vec::len), Some(25));
    assert_eq!(users["has_more"], true);
    assert_eq!(
        users["data"][0],
        json!({"label": "l1", "username": c1["username"], "usageInBytes": 1 << 20})
    );
    let users2 = api
        .send(call(
            Method::GET,
            &format!("{}&page=2", pk("/current_usage_by_user", &pkey)),
        ))
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        (
            users2["data"].as_array().map(Vec::len),
            users2["has_more"].clone()
        ),
        (Some(1), json!(false))
    );
    api.send(call(Method::GET, &pk("/current_usage_for_user", &pkey)))
        .await
        .metered(
            StatusCode::BAD_REQUEST,
            "message",
            "please pass the username query parameter",
        );
    let one_user = api
        .send(call(
            Method::GET,
            &format!(
                "{}&username={}",
                pk("/current_usage_for_user", &pkey),
                c1["username"].as_str().expect("a name")
            ),
        ))
        .await
        .ok(StatusCode::OK);
    assert_eq!(one_user, json!({"label": "l1", "usageInBytes": 1 << 20}));

    // The quota acts on the project: `disable` refuses new allocations at 100 %.
    credential_bytes(&api.state, &pid, &id1, 2 << 20, NOW).await;
    quota::evaluate(&api.state, None).await;
    let refused = api
        .state
        .directory
        .load()
        .tenant_limits
        .get(pid.as_str())
        .is_some_and(|l| l.refuse);
    assert!(refused, "the project is refused at its quota");
    let alerts = api.state.store.list_alerts(&pid).await.expect("alerts");
    let mut fired: Vec<_> = alerts
        .iter()
        .map(|a| (a.percent, a.action.clone()))
        .collect();
    fired.sort();
    assert_eq!(
        fired,
        [(80, "notify".to_string()), (100, "refuse".to_string())]
    );

    // P8 / P9: delete by username (body) and by label.
    let gone = api
        .send(
            call(Method::DELETE, &pk("/credential", &pkey))
                .json(json!({"username": c2["username"]})),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        gone,
        json!({"success": true, "message": "credential removed"})
    );
    api.send(
        call(Method::DELETE, &pk("/credential", &pkey)).json(json!({"username": c2["username"]})),
    )
    .await
    .metered(
        StatusCode::BAD_REQUEST,
        "message",
        "credential of the specified username is not found",
    );
    api.send(call(Method::DELETE, &pk("/credential", &pkey)).json(json!({})))
        .await
        .metered(StatusCode::BAD_REQUEST, "message", "username is required");
    let n = api
        .send(
            call(Method::DELETE, &pk("/credential/by_label", &pkey))
                .json(json!({"label": "bulk0"})),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(n, json!({"deleted": 25}));
    api.send(call(Method::DELETE, &pk("/credential/by_label", &pkey)).json(json!({"label": ""})))
        .await
        .metered(
            StatusCode::BAD_REQUEST,
            "message",
            "label must be a non-empty string of less than 100 characters",
        );

    // P5: the old key stops at once; the new one works; only the app may regenerate.
    api.send(call(Method::POST, &pk("/regenerate_api_key", &pkey)))
        .await
        .metered(StatusCode::BAD_REQUEST, "message", "secretKey is required");
    let r = api
        .send(call(Method::POST, &one("/regenerate_api_key", &secret)))
        .await
        .ok(StatusCode::OK);
    assert_eq!(r["success"], true);
    let new_key = r["apiKey"].as_str().expect("a key").to_string();
    api.send(call(Method::GET, &pk("/current_usage", &pkey)))
        .await
        .metered(StatusCode::UNAUTHORIZED, "message", "Invalid projectApiKey");
    api.send(call(Method::GET, &pk("/current_usage", &new_key)))
        .await
        .ok(StatusCode::OK);

    // P4: the project goes with its credentials and keys.
    api.send(call(Method::DELETE, &one("", &other)))
        .await
        .metered(StatusCode::BAD_REQUEST, "message", "Project not found");
    let d = api
        .send(call(Method::DELETE, &one("", &secret)))
        .await
        .ok(StatusCode::OK);
    assert_eq!(d, json!({"success": true}));
    assert!(api
        .state
        .store
        .credential_by_username(&pid, c1["username"].as_str().expect("a name"))
        .await
        .expect("the store")
        .is_none());
    api.send(call(Method::GET, &pk("/current_usage", &new_key)))
        .await
        .metered(StatusCode::UNAUTHORIZED, "message", "Invalid projectApiKey");
    api.send(call(Method::DELETE, &one("", &secret)))
        .await
        .metered(StatusCode::BAD_REQUEST, "message", "Project not found");
}

#[tokio::test]
async fn deleting_an_app_deletes_its_projects() {
    let api = start(ApiConfig::default()).await;
    let (app_id, secret) = api.tenant("app").await;
    let p = api
        .send(
            call(
                Method::POST,
                &with("/api/v2/turn/project", "secretKey", &secret),
            )
            .json(json!({"projectName": "p"})),
        )
        .await
        .ok(StatusCode::OK);
    let pid = &TenantId::from(p["_id"].as_str().expect("an id"));
    api.send(call(Method::DELETE, &format!("/v1/tenants/{app_id}")).key(ADMIN))
        .await
        .ok(StatusCode::NO_CONTENT);
    assert!(api.state.store.get_tenant(pid).await.is_err());
}

#[tokio::test]
async fn webhooks_may_send_metereds_body() {
    let api = start(ApiConfig::default()).await;
    let (_, secret) = api.tenant("acme").await;
    let put = |body: Value| {
        call(Method::PUT, "/v1/notifications")
            .key(&secret)
            .json(body)
    };
    let n = api
        .send(put(
            json!({"email_to": "ops@example.com", "format": "metered"}),
        ))
        .await
        .ok(StatusCode::OK);
    assert_eq!(n["format"], "metered");
    let n = api
        .send(call(Method::GET, "/v1/notifications").key(&secret))
        .await
        .ok(StatusCode::OK);
    assert_eq!(n["format"], "metered");
    let n = api
        .send(put(json!({"email_to": "ops@example.com"})))
        .await
        .ok(StatusCode::OK);
    assert_eq!(n["format"], "turnpike");
    api.send(put(json!({"format": "xml"})))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
}

#[tokio::test]
async fn usage_pages_by_user_and_by_credential() {
    let api = start(ApiConfig::default()).await;
    let (tid, tenant) = api.tenant("acme").await;
    // Five users, each with two hours of traffic in the month (user i: i + 1 bytes an hour).
    for i in 0..5i64 {
        for h in [0, 30] {
            let delta = UsageDelta {
                tenant_id: tid.as_str().into(),
                credential_id: format!("cred_{i}"),
                user_id: format!("user-{i}"),
                hour: NOW / 3600 - h,
                counters: Counters {
                    c2s_bytes: i + 1,
                    ..Counters::default()
                },
            };
            api.state
                .store
                .add_usage(&[delta])
                .await
                .expect("usage added");
        }
    }
    let range = format!("from={}&to={}&group_by=month", NOW - 3 * 86_400, NOW + 3600);
    let page = |by: &str, extra: &str| format!("/v1/usage?{range}&by={by}&limit=2{extra}");
    let get = |path: String| {
        let api = &api;
        let tenant = tenant.clone();
        async move {
            api.send(call(Method::GET, &path).key(&tenant))
                .await
                .ok(StatusCode::OK)
        }
    };
    let keys = |r: &Value| -> Vec<String> {
        r["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| g["key"].as_str().expect("a key").to_string())
            .collect()
    };
    let first = get(page("user", "")).await;
    assert_eq!(keys(&first), ["user-0", "user-1"], "{first}");
    assert_eq!(first["next_after"], "user-1");
    // Each user's month is its two hours; totals are the page's.
    assert_eq!(first["groups"][1]["client_to_server_bytes"], 4);
    assert_eq!(first["totals"]["client_to_server_bytes"], 2 + 4);
    let second = get(page("user", "&after=user-1")).await;
    assert_eq!(keys(&second), ["user-2", "user-3"]);
    let last = get(page("user", "&after=user-3")).await;
    assert_eq!(keys(&last), ["user-4"]);
    assert!(last.get("next_after").is_none(), "{last}");
    // By credential the same way; the pages together are the unpaged report.
    let by_cred = get(page("credential", "&after=cred_3")).await;
    assert_eq!(keys(&by_cred), ["cred_4"]);
    let all = get(format!("/v1/usage?{range}&by=user")).await;
    assert_eq!(
        all["totals"]["client_to_server_bytes"],
        2 * (1 + 2 + 3 + 4 + 5)
    );
    // `limit` pages by key only, within bounds.
    for bad in [
        format!("/v1/usage?{range}&limit=2"),
        format!("/v1/usage?{range}&by=tag&limit=2"),
        format!("/v1/usage?{range}&by=user&limit=0"),
        format!("/v1/usage?{range}&by=user&limit=1001"),
    ] {
        api.send(call(Method::GET, &bad).key(&tenant))
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    }
}

async fn use_user_bytes(
    state: &AppState,
    tenant_id: &str,
    user: &str,
    bytes: i64,
    secs: i64,
    at: i64,
) {
    let delta = UsageDelta {
        tenant_id: tenant_id.into(),
        credential_id: format!("cred-{user}"),
        user_id: user.into(),
        hour: at / 3600,
        counters: Counters {
            c2s_bytes: bytes,
            allocations: 1,
            allocation_seconds: secs,
            ..Counters::default()
        },
    };
    state.store.add_usage(&[delta]).await.expect("usage added");
}

#[tokio::test]
async fn billing_statements_close_once_and_bill_late_usage_next() {
    use turnpike_api::domain::billing::{close_due, CLOSE_AFTER};
    let api = start(ApiConfig::default()).await;
    let (tid, tenant) = api.tenant("acme").await;
    let (_, other) = api.tenant("other").await;
    let plan_path = format!("/v1/tenants/{tid}/plan");
    let plan = json!({"currency": "eur", "price_per_gb": "0.40", "price_per_allocation_hour": 0.01,
                      "included_bytes": 1_000_000_000, "billing_day": 1, "first_month": "2026-11"});
    // Only the operator sets plans; bad input names the field.
    api.send(
        call(Method::PUT, &plan_path)
            .key(&tenant)
            .json(plan.clone()),
    )
    .await
    .error(StatusCode::FORBIDDEN, "forbidden");
    let mut bad = plan.clone();
    bad["billing_day"] = json!(31);
    let m = api
        .send(call(Method::PUT, &plan_path).key(ADMIN).json(bad))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(m.contains("billing_day"), "{m}");
    let mut bad = plan.clone();
    bad["price_per_gb"] = json!("0.1234567");
    let m = api
        .send(call(Method::PUT, &plan_path).key(ADMIN).json(bad))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(m.contains("price_per_gb"), "{m}");
    let set = api
        .send(call(Method::PUT, &plan_path).key(ADMIN).json(plan))
        .await
        .ok(StatusCode::OK);
    assert_eq!(set["currency"], "EUR");
    assert_eq!(set["price_per_gb"], "0.40");
    assert_eq!(set["price_per_allocation_hour"], "0.01");
    let mine = api
        .send(call(Method::GET, "/v1/billing/plan").key(&tenant))
        .await
        .ok(StatusCode::OK);
    assert_eq!(mine, set);

    // November: 3 GB and two hours by u1, 0.5 GB by u2.
    use_user_bytes(&api.state, &tid, "u1", 3_000_000_000, 7200, NOW - 5 * 3600).await;
    use_user_bytes(&api.state, &tid, "u2", 500_000_000, 0, NOW).await;
    fn nov(key: &str) -> Call<'_> {
        call(Method::GET, "/v1/billing/statements?month=2026-11").key(key)
    }
    let open = api.send(nov(&tenant)).await.ok(StatusCode::OK);
    assert_eq!(open["status"], "open");
    assert_eq!(open["period_start"], NOVEMBER);
    assert_eq!(open["period_end"], DECEMBER);
    assert_eq!(open["bytes_in_period"], 3_500_000_000_i64);
    assert_eq!(open["chargeable_bytes"], 2_500_000_000_i64);
    // 2.5 GB x 0.40 = 1.00; 2 h x 0.01 = 0.02.
    assert_eq!(open["data_minor"], 100);
    assert_eq!(open["allocation_minor"], 2);
    assert_eq!(open["total_minor"], 102);
    assert_eq!(open["total"], "1.02");
    assert_eq!(open["users"][0]["user_id"], "u1");
    assert_eq!(open["users"][0]["data_minor"], 120);
    assert_eq!(open["users"][1]["bytes"], 500_000_000);
    // The operator sees the same by acting in the tenant; another tenant has nothing.
    let acting = api
        .send(nov(ADMIN).header("x-turnpike-tenant", &tid))
        .await
        .ok(StatusCode::OK);
    assert_eq!(acting, open);
    api.send(nov(ADMIN).header("x-turnpike-tenant", "ten_nobody"))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    api.send(nov(&other))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    api.send(call(Method::GET, "/v1/billing/statements?month=2026-10").key(&tenant))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    api.send(call(Method::GET, "/v1/billing/statements?month=2026-1").key(&tenant))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");

    // Not closed until CLOSE_AFTER past the period's end; then once.
    api.clock.set(DECEMBER + CLOSE_AFTER - 1);
    assert_eq!(close_due(&api.state).await.unwrap(), 0);
    api.clock.set(DECEMBER + CLOSE_AFTER);
    assert_eq!(close_due(&api.state).await.unwrap(), 1);
    assert_eq!(close_due(&api.state).await.unwrap(), 0);
    let closed = api.send(nov(&tenant)).await.ok(StatusCode::OK);
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["closed_at"], DECEMBER + CLOSE_AFTER);
    assert_eq!(closed["total_minor"], 102);

    // Late November usage and a price change: November stays as closed; December bills it.
    use_user_bytes(&api.state, &tid, "u1", 700_000_000, 3600, NOW).await;
    use_user_bytes(&api.state, &tid, "u1", 800_000_000, 0, DECEMBER + 3600).await;
    let mut cheaper = api
        .send(call(Method::GET, &plan_path).key(ADMIN))
        .await
        .ok(StatusCode::OK);
    cheaper["price_per_gb"] = json!("0.20");
    for k in ["tenant_id", "updated_at"] {
        cheaper.as_object_mut().unwrap().remove(k);
    }
    api.send(call(Method::PUT, &plan_path).key(ADMIN).json(cheaper))
        .await
        .ok(StatusCode::OK);
    assert_eq!(api.send(nov(&tenant)).await.ok(StatusCode::OK), closed);
    let dec = call(Method::GET, "/v1/billing/statements?month=2026-12").key(&tenant);
    let d = api.send(dec).await.ok(StatusCode::OK);
    assert_eq!(d["status"], "open");
    assert_eq!(d["bytes_in_period"], 800_000_000);
    assert_eq!(d["late_bytes"], 700_000_000);
    assert_eq!(d["late_allocation_seconds"], 3600);
    assert_eq!(d["billable_bytes"], 1_500_000_000);
    // 0.5 GB over the included volume at 0.20 = 0.10; 1 h at 0.01.
    assert_eq!(
        (d["data_minor"].as_i64(), d["allocation_minor"].as_i64()),
        (Some(10), Some(1))
    );

    // January closes December with the late usage; the list shows all three.
    const JANUARY: i64 = 1_798_761_600; // 2027-01-01T00:00:00Z
    api.clock.set(JANUARY + CLOSE_AFTER);
    assert_eq!(close_due(&api.state).await.unwrap(), 1);
    let list = api
        .send(call(Method::GET, "/v1/billing/statements").key(&tenant))
        .await
        .ok(StatusCode::OK);
    let items: Vec<(String, String, i64)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["month"].as_str().unwrap().into(),
                i["status"].as_str().unwrap().into(),
                i["total_minor"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        items,
        vec![
            ("2027-01".into(), "open".into(), 0),
            ("2026-12".into(), "closed".into(), 11),
            ("2026-11".into(), "closed".into(), 102),
        ]
    );

    // CSV and the printable page.
    let csv = api
        .send(
            call(
                Method::GET,
                "/v1/billing/statements?month=2026-11&format=csv",
            )
            .key(&tenant),
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.body.as_str().unwrap().to_string();
    assert!(
        text.contains("2026-11,closed,total,,,,3500000000,7200,102,1.02,EUR"),
        "{text}"
    );
    assert!(
        text.contains("2026-11,closed,user,u2,,,500000000,0,20,0.20,EUR"),
        "{text}"
    );
    let page = api
        .send(
            call(
                Method::GET,
                "/v1/billing/statements?month=2026-11&format=html",
            )
            .key(&tenant),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"));
    let html = page.body.as_str().unwrap();
    assert!(
        html.contains("1.02 EUR") && html.contains("Closed: final."),
        "{html}"
    );
}

#[tokio::test]
async fn top_users_and_live_allocations() {
    let api = start(ApiConfig::default()).await;
    let (tid, tenant) = api.tenant("acme").await;
    use_user_bytes(&api.state, &tid, "small", 5, 1, NOW).await;
    use_user_bytes(&api.state, &tid, "big", 900, 60, NOW - 3600).await;
    use_user_bytes(&api.state, &tid, "mid", 50, 0, NOW).await;
    // Last month's usage is not in this period.
    use_user_bytes(&api.state, &tid, "old", 10_000, 0, NOVEMBER - 3600).await;
    let top = api
        .send(call(Method::GET, "/v1/usage/top-users?limit=2").key(&tenant))
        .await
        .ok(StatusCode::OK);
    assert_eq!(top["period_start"], NOVEMBER);
    let users: Vec<(&str, i64)> = top["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().unwrap(),
                u["total_bytes"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(users, vec![("big", 900), ("mid", 50)]);
    api.send(call(Method::GET, "/v1/usage/top-users?limit=0").key(&tenant))
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");

    let rec = |id: &str, ended: Option<i64>| turnpike_store::AllocationRecord {
        id: id.into(),
        tenant_id: tid.as_str().into(),
        username: "alice".into(),
        started_at: NOW - 60,
        ended_at: ended,
        ..Default::default()
    };
    api.state
        .store
        .upsert_allocations(&[rec("a1", None), rec("a2", Some(NOW)), rec("a3", None)])
        .await
        .unwrap();
    let live = api
        .send(call(Method::GET, "/v1/allocations/live").key(&tenant))
        .await
        .ok(StatusCode::OK);
    assert_eq!(live["count"], 2);
    let (_, other) = api.tenant("other").await;
    let none = api
        .send(call(Method::GET, "/v1/allocations/live").key(&other))
        .await
        .ok(StatusCode::OK);
    assert_eq!(none["count"], 0);
}

/// A webhook receiver on 127.0.0.1 answering each request with the next status of `statuses`
/// (then 200); returns its URL and the bodies received.
async fn receiver(statuses: Vec<u16>) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        let mut statuses = statuses.into_iter();
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        seen.lock().unwrap().push(text[end + 4..].to_string());
                        break;
                    }
                }
            }
            let status = statuses.next().unwrap_or(200);
            let resp =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = sock.write_all(resp.as_bytes()).await;
        }
    });
    (url, got)
}

#[tokio::test]
async fn test_events_and_the_delivery_log() {
    let api = start(ApiConfig {
        danger_allow_webhook_ranges: vec!["127.0.0.0/8".parse().unwrap()],
        webhook_attempts: 2,
        webhook_first_retry: std::time::Duration::from_millis(10),
        ..ApiConfig::default()
    })
    .await;
    let (_, tenant) = api.tenant("acme").await;
    // Nothing to send to yet.
    api.send(call(Method::POST, "/v1/notifications/test").key(&tenant))
        .await
        .error(StatusCode::CONFLICT, "conflict");
    // The receiver fails twice (both tries), then accepts.
    let (url, got) = receiver(vec![500, 503]).await;
    api.send(
        call(Method::PUT, "/v1/notifications")
            .key(&tenant)
            .json(json!({"webhook_url": url})),
    )
    .await
    .ok(StatusCode::OK);
    let sent = api
        .send(call(Method::POST, "/v1/notifications/test").key(&tenant))
        .await
        .ok(StatusCode::ACCEPTED);
    let event = sent["event_id"].as_str().unwrap().to_string();
    async fn log(api: &Api, key: &str) -> Value {
        api.send(call(Method::GET, "/v1/notifications/deliveries").key(key))
            .await
            .ok(StatusCode::OK)
    }
    let mut entries = Value::Null;
    for _ in 0..200 {
        entries = log(&api, &tenant).await;
        if entries.as_array().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let e = entries.as_array().unwrap();
    assert_eq!(e.len(), 2, "{entries}");
    assert_eq!(
        (e[0]["attempt"].as_i64(), e[0]["status"].as_i64()),
        (Some(2), Some(503))
    );
    assert_eq!(
        (e[1]["attempt"].as_i64(), e[1]["status"].as_i64()),
        (Some(1), Some(500))
    );
    assert!(e
        .iter()
        .all(|x| x["outcome"] == "failed" && x["event_id"] == event.as_str()));
    assert_eq!(e[0]["target"], "127.0.0.1");
    assert_eq!(e[0]["kind"], "test");
    // Retry sends the same event again: delivered.
    let retry = format!("/v1/notifications/deliveries/{event}/retry");
    api.send(call(Method::POST, &retry).key(&tenant))
        .await
        .ok(StatusCode::ACCEPTED);
    for _ in 0..200 {
        entries = log(&api, &tenant).await;
        if entries.as_array().unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(entries[0]["outcome"], "delivered", "{entries}");
    assert_eq!(entries[0]["status"], 200);
    let bodies = got.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3);
    assert!(
        bodies.iter().all(|b| b == &bodies[0]),
        "the same event each time"
    );
    let body: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(
        (body["type"].as_str(), body["id"].as_str()),
        (Some("test"), Some(event.as_str()))
    );
    // Another tenant cannot see or retry it.
    let (_, other) = api.tenant("other").await;
    api.send(call(Method::POST, &retry).key(&other))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(log(&api, &tenant).await.as_array().unwrap().len(), 3);
}

/// A suspended tenant reads but changes and mints nothing (403 `tenant_suspended`, on `/v1`
/// and the Metered-compatible paths), its publishable keys stop, the relay's directory names
/// it; other tenants are untouched; only the operator suspends and resumes.
#[tokio::test]
async fn a_suspended_tenant_reads_but_changes_and_mints_nothing() {
    let api = start(ApiConfig::default()).await;
    let (a, ka) = api.tenant("a").await;
    let (_, kb) = api.tenant("b").await;
    let cred = api.credential(&ka, json!({"label": "web"})).await;
    let cid = cred["id"].as_str().expect("an id");
    let pk = api
        .send(
            call(
                Method::POST,
                &format!("/v1/credentials/{cid}/publishable-keys"),
            )
            .key(&ka)
            .json(json!({"allowed_origins": ["*"]})),
        )
        .await
        .ok(StatusCode::CREATED)["key"]
        .as_str()
        .expect("a key")
        .to_string();
    let suspend = format!("/v1/tenants/{a}/suspend");
    api.send(call(Method::POST, &suspend).key(&kb))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    api.send(call(Method::POST, "/v1/tenants/ten_nobody/suspend").key(ADMIN))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    let t = api
        .send(call(Method::POST, &suspend).key(ADMIN))
        .await
        .ok(StatusCode::OK);
    assert_eq!(t["suspended_at"], NOW, "{t}");
    assert!(api.state.directory.load().suspended_tenants.contains(&a));
    // Reads work; changes and minting do not.
    let list = api
        .send(call(Method::GET, "/v1/credentials").key(&ka))
        .await
        .ok(StatusCode::OK);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let me = api
        .send(call(Method::GET, &format!("/v1/tenants/{a}")).key(&ka))
        .await
        .ok(StatusCode::OK);
    assert_eq!(me["suspended_at"], NOW);
    let m = api
        .send(
            call(Method::POST, "/v1/credentials")
                .key(&ka)
                .json(json!({"label": "more"})),
        )
        .await
        .error(StatusCode::FORBIDDEN, "tenant_suspended");
    assert!(m.contains("suspended"), "{m}");
    api.send(
        call(Method::PATCH, &format!("/v1/credentials/{cid}"))
            .key(&ka)
            .json(json!({"enabled": false})),
    )
    .await
    .error(StatusCode::FORBIDDEN, "tenant_suspended");
    api.send(call(Method::GET, "/v1/ice-servers").key(&ka))
        .await
        .error(StatusCode::FORBIDDEN, "tenant_suspended");
    api.send(call(Method::GET, "/v1/ice-servers").key(&pk))
        .await
        .error(StatusCode::FORBIDDEN, "tenant_suspended");
    let metered = with("/api/v1/turn/credential", "secretKey", &ka);
    let r = api.send(call(Method::POST, &metered)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body["message"]
        .as_str()
        .unwrap_or("")
        .contains("suspended"));
    let ice = with("/api/v1/turn/credentials", "apiKey", &ka);
    assert_eq!(
        api.send(call(Method::GET, &ice)).await.status,
        StatusCode::FORBIDDEN
    );
    // Another tenant is untouched.
    api.credential(&kb, json!({"label": "fine"})).await;
    api.send(call(Method::GET, "/v1/ice-servers").key(&kb))
        .await
        .ok(StatusCode::OK);
    // The operator sees it and resumes it; everything works again.
    let all = api
        .send(call(Method::GET, "/v1/tenants").key(ADMIN))
        .await
        .ok(StatusCode::OK);
    let listed: Vec<&Value> = all
        .as_array()
        .expect("a list")
        .iter()
        .filter(|t| t["suspended_at"] == NOW)
        .collect();
    assert_eq!(listed.len(), 1, "{all}");
    let t = api
        .send(call(Method::POST, &format!("/v1/tenants/{a}/resume")).key(ADMIN))
        .await
        .ok(StatusCode::OK);
    assert!(t.get("suspended_at").is_none(), "{t}");
    assert!(api.state.directory.load().suspended_tenants.is_empty());
    api.credential(&ka, json!({"label": "more"})).await;
    api.send(call(Method::GET, "/v1/ice-servers").key(&pk))
        .await
        .ok(StatusCode::OK);
    let audit = api
        .send(call(Method::GET, "/v1/audit").key(ADMIN))
        .await
        .ok(StatusCode::OK);
    let s = audit.to_string();
    assert!(
        s.contains("tenant.suspend") && s.contains("tenant.resume"),
        "{s}"
    );
}
