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
use turnpike_store::{AnyStore, Counters, Store, UsageDelta};

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
    let cfg = ApiConfig {
        admin_key_hash: Some(hash_key(ADMIN)),
        listeners: Listeners {
            udp: vec!["192.0.2.1:3478".parse().expect("an address")],
            ..Listeners::default()
        },
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
    let q = format!("/api/v2/turn/credentials?secretKey={pk}");
    api.send(call(Method::GET, &q))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
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
    // DomainError::NotFound with the domain's message, through the Metered endpoints.
    let q = format!("/api/v1/turn/credential/enable?secretKey={tenant}");
    let m = api
        .send(call(Method::POST, &q).json(json!({"username": "nobody"})))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(m, "credential not found");
    api.send(call(Method::POST, &q).json(json!({"username": "alice"})))
        .await
        .error(StatusCode::CONFLICT, "conflict");
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
    api.send(call(Method::GET, &q).from("198.51.100.7:1003"))
        .await
        .error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
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
        tenant_id: tenant_id.to_string(),
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
