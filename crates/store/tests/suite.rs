//! One behavioural suite, run against SQLite (a real file) and PostgreSQL (a real server that
//! `scripts/test` starts on 127.0.0.1 and names in `TURNPIKE_TEST_POSTGRES_URL`).

use turnpike_store::*;

const NOW: i64 = 1_800_000_000;

fn cred<'a>(
    tenant: &'a str,
    username: &'a str,
    label: Option<&'a str>,
    expires_at: Option<i64>,
) -> NewCredential<'a> {
    NewCredential {
        tenant_id: tenant,
        username,
        key_md5: &[1u8; 16],
        key_sha256: &[2u8; 32],
        label,
        expires_at,
    }
}

async fn suite(s: &impl Store) {
    // Tenants.
    let a = s.create_tenant("acme", NOW).await.unwrap();
    let b = s.create_tenant("globex", NOW).await.unwrap();
    assert_eq!(s.get_tenant(&a.id).await.unwrap(), a);
    assert!(matches!(
        s.get_tenant("ten_missing").await,
        Err(StoreError::NotFound)
    ));
    let all = s.list_tenants().await.unwrap();
    assert!(all.contains(&a) && all.contains(&b));

    // API keys: stored by hash, found by hash, revocable, unique.
    let k = s
        .create_api_key(Some(&a.id), &[9u8; 32], "tpk_abcd", NOW, None)
        .await
        .unwrap();
    let found = s.api_key_by_hash(&[9u8; 32]).await.unwrap().unwrap();
    assert_eq!(found, k);
    assert_eq!(found.tenant_id.as_deref(), Some(a.id.as_str()));
    assert!(s.api_key_by_hash(&[8u8; 32]).await.unwrap().is_none());
    assert!(matches!(
        s.create_api_key(None, &[9u8; 32], "x", NOW, None).await,
        Err(StoreError::Conflict(_))
    ));
    s.revoke_api_key(&k.id).await.unwrap();
    assert!(
        s.api_key_by_hash(&[9u8; 32])
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    let admin = s
        .create_api_key(None, &[7u8; 32], "tpa_0000", NOW, Some(NOW + 10))
        .await
        .unwrap();
    assert_eq!(admin.tenant_id, None);

    // Credentials: unique usernames, tenant isolation.
    let suffix = &a.id[4..10];
    let u1 = format!("alice-{suffix}");
    let c1 = s
        .create_credential(&cred(&a.id, &u1, Some("web"), None), NOW)
        .await
        .unwrap();
    assert!(matches!(
        s.create_credential(&cred(&b.id, &u1, None, None), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.get_credential(&a.id, &c1.id).await.unwrap(), c1);
    assert!(matches!(
        s.get_credential(&b.id, &c1.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.set_credential_enabled(&b.id, &c1.id, false).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.delete_credential(&b.id, &c1.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        s.credential_by_username(&u1)
            .await
            .unwrap()
            .unwrap()
            .key_md5,
        vec![1u8; 16]
    );

    // Enable / disable.
    s.set_credential_enabled(&a.id, &c1.id, false)
        .await
        .unwrap();
    assert!(!s.get_credential(&a.id, &c1.id).await.unwrap().enabled);
    s.set_credential_enabled(&a.id, &c1.id, true).await.unwrap();
    assert!(s.get_credential(&a.id, &c1.id).await.unwrap().enabled);

    // Listing: cursor pagination, label filter, expired excluded unless asked.
    for i in 0..5 {
        let u = format!("bulk{i}-{suffix}");
        s.create_credential(&cred(&a.id, &u, Some("bulk"), None), NOW)
            .await
            .unwrap();
    }
    let expired = format!("old-{suffix}");
    s.create_credential(&cred(&a.id, &expired, Some("bulk"), Some(NOW - 1)), NOW)
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = ListQuery {
            label: Some("bulk"),
            include_expired: false,
            cursor: cursor.as_deref(),
            limit: 2,
        };
        let page = s.list_credentials(&a.id, &q, NOW).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|c| c.username.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(!seen.contains(&expired));
    let with_expired = s
        .list_credentials(
            &a.id,
            &ListQuery {
                label: Some("bulk"),
                include_expired: true,
                cursor: None,
                limit: 100,
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(with_expired.items.len(), 6);
    let everything = s
        .list_credentials(
            &a.id,
            &ListQuery {
                limit: 100,
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(everything.items.len(), 6, "expired are hidden by default");
    assert!(s
        .list_credentials(
            &b.id,
            &ListQuery {
                limit: 100,
                ..Default::default()
            },
            NOW
        )
        .await
        .unwrap()
        .items
        .is_empty());

    // Delete one, and by label (only this tenant's).
    s.delete_credential(&a.id, &c1.id).await.unwrap();
    assert!(s.credential_by_username(&u1).await.unwrap().is_none());
    let other = format!("bulkb-{suffix}");
    s.create_credential(&cred(&b.id, &other, Some("bulk"), None), NOW)
        .await
        .unwrap();
    assert_eq!(
        s.delete_credentials_by_label(&a.id, "bulk").await.unwrap(),
        6
    );
    assert!(s.credential_by_username(&other).await.unwrap().is_some());

    // Usage: exact additions per hour, per tenant.
    let hour = NOW / 3600;
    let d = |cred: &str, h: i64, bytes: i64| UsageDelta {
        tenant_id: a.id.clone(),
        credential_id: cred.to_string(),
        hour: h,
        bytes_in: bytes,
        bytes_out: 2 * bytes,
        packets_in: 1,
        packets_out: 2,
        allocations: 1,
    };
    s.add_usage(&[d("c1", hour, 100), d("c2", hour, 5)])
        .await
        .unwrap();
    s.add_usage(&[d("c1", hour, 23), d("c1", hour + 1, 7)])
        .await
        .unwrap();
    let rows = s.usage(&a.id, hour, hour + 2).await.unwrap();
    assert_eq!(rows.len(), 3);
    let c1h = rows
        .iter()
        .find(|r| r.credential_id == "c1" && r.hour == hour)
        .unwrap();
    assert_eq!(
        (c1h.bytes_in, c1h.bytes_out, c1h.packets_in, c1h.allocations),
        (123, 246, 2, 2)
    );
    assert_eq!(s.usage(&a.id, hour + 1, hour + 2).await.unwrap().len(), 1);
    assert!(s.usage(&b.id, hour, hour + 2).await.unwrap().is_empty());
    // Large values do not overflow.
    s.add_usage(&[d("big", hour, 1 << 40), d("big", hour, 1 << 40)])
        .await
        .unwrap();
    let big = s.usage(&a.id, hour, hour + 1).await.unwrap();
    assert_eq!(
        big.iter()
            .find(|r| r.credential_id == "big")
            .unwrap()
            .bytes_in,
        1 << 41
    );
}

#[tokio::test]
async fn sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("turnpike.db").display());
    let s = SqliteStore::connect(&url).await.unwrap();
    suite(&s).await;
    drop(s);
    // Reopening the file keeps everything (migrations are not re-applied destructively).
    let again = AnyStore::connect(&url).await.unwrap();
    assert!(again.list_tenants().await.unwrap().len() >= 2);
}

/// Needs a PostgreSQL server; `scripts/test` starts one and runs the ignored tests.
#[tokio::test]
#[ignore = "needs TURNPIKE_TEST_POSTGRES_URL (scripts/test starts a server)"]
async fn postgres_server() {
    let url = std::env::var("TURNPIKE_TEST_POSTGRES_URL")
        .expect("TURNPIKE_TEST_POSTGRES_URL must name a PostgreSQL server");
    let s = AnyStore::connect(&url).await.unwrap();
    assert!(matches!(s, AnyStore::Postgres(_)));
    suite(&s).await;
}

#[tokio::test]
async fn unsupported_url() {
    assert!(matches!(
        AnyStore::connect("mysql://x").await,
        Err(StoreError::UnsupportedUrl)
    ));
}
