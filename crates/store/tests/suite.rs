//! One behavioural suite, run against SQLite (a real file) and PostgreSQL (a real server that
//! `scripts/test` starts on 127.0.0.1 and names in `TURNPIKE_TEST_POSTGRES_URL`).

use turnpike_store::*;

const NOW: i64 = 1_800_000_000;

fn cred<'a>(
    tenant: &'a TenantId,
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
        tags: &[],
        expires_at,
    }
}

fn key<'a>(
    tenant: Option<&'a TenantId>,
    hash: &'a [u8],
    kind: KeyKind,
    exp: Option<i64>,
) -> NewApiKey<'a> {
    NewApiKey {
        tenant_id: tenant,
        kind,
        credential_id: None,
        allowed_origins: &[],
        key_hash: hash,
        prefix: "tp_test",
        expires_at: exp,
    }
}

async fn suite(s: &impl Store) {
    // Tenants.
    let a = s.create_tenant("acme", NOW).await.unwrap();
    let b = s.create_tenant("globex", NOW).await.unwrap();
    assert_eq!(s.get_tenant(&a.id).await.unwrap(), a);
    assert!(matches!(
        s.get_tenant(&"ten_missing".into()).await,
        Err(StoreError::NotFound)
    ));
    let all = s.list_tenants().await.unwrap();
    assert!(all.contains(&a) && all.contains(&b));

    // API keys: stored by hash, found by hash, revocable, unique.
    let k = s
        .create_api_key(&key(Some(&a.id), &[9u8; 32], KeyKind::Secret, None), NOW)
        .await
        .unwrap();
    let found = s.api_key_by_hash(&[9u8; 32]).await.unwrap().unwrap();
    assert_eq!(found, k);
    assert_eq!(found.tenant_id.as_deref(), Some(a.id.as_str()));
    assert!(s.api_key_by_hash(&[8u8; 32]).await.unwrap().is_none());
    assert!(matches!(
        s.create_api_key(&key(None, &[9u8; 32], KeyKind::Admin, None), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.revoke_api_key(Some(&b.id), &k.id).await,
        Err(StoreError::NotFound)
    ));
    s.revoke_api_key(Some(&a.id), &k.id).await.unwrap();
    assert!(
        s.api_key_by_hash(&[9u8; 32])
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    let admin = s
        .create_api_key(&key(None, &[7u8; 32], KeyKind::Admin, Some(NOW + 10)), NOW)
        .await
        .unwrap();
    assert_eq!(admin.tenant_id, None);
    assert!(admin.is_live(NOW) && !admin.is_live(NOW + 10));
    // Rotation overlap: live secret keys of a tenant lapse at a given time.
    s.create_api_key(&key(Some(&a.id), &[6u8; 32], KeyKind::Secret, None), NOW)
        .await
        .unwrap();
    assert_eq!(
        s.expire_api_keys(&a.id, KeyKind::Secret, NOW + 60)
            .await
            .unwrap(),
        1
    );
    let k6 = s.api_key_by_hash(&[6u8; 32]).await.unwrap().unwrap();
    assert_eq!(k6.expires_at, Some(NOW + 60));
    assert_eq!(s.list_api_keys(&a.id).await.unwrap().len(), 2);
    assert!(s.list_api_keys(&b.id).await.unwrap().is_empty());

    // Credentials: usernames unique per tenant, tenant isolation.
    let suffix = &a.id[4..10];
    let u1 = format!("alice-{suffix}");
    let c1 = s
        .create_credential(&cred(&a.id, &u1, Some("web"), None), NOW)
        .await
        .unwrap();
    assert!(matches!(
        s.create_credential(&cred(&a.id, &u1, None, None), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    // The same name in another tenant, with another key (password), is its own credential.
    let b_alice = s
        .create_credential(
            &NewCredential {
                key_sha256: &[3u8; 32],
                ..cred(&b.id, &u1, None, None)
            },
            NOW,
        )
        .await
        .unwrap();
    assert_ne!(b_alice.id, c1.id);
    assert_eq!(
        s.credential_by_username(&b.id, &u1)
            .await
            .unwrap()
            .unwrap()
            .id,
        b_alice.id
    );
    // The same name with the same key as another tenant's: the relay could not tell them
    // apart.
    let c = s.create_tenant("initech", NOW).await.unwrap();
    assert!(matches!(
        s.create_credential(&cred(&c.id, &u1, None, None), NOW)
            .await,
        Err(StoreError::KeyCollision)
    ));
    // Same tenant, same name, same key: the name is what is taken.
    assert!(matches!(
        s.create_credential(
            &NewCredential {
                key_sha256: &[3u8; 32],
                ..cred(&b.id, &u1, None, None)
            },
            NOW
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    s.delete_credential(&b.id, &b_alice.id).await.unwrap();
    s.delete_tenant(&c.id).await.unwrap();
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
    assert!(s
        .credential_by_username(&b.id, &u1)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.credential_by_username(&a.id, &u1)
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
            offset: 0,
            limit: 2,
            ..Default::default()
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
                offset: 0,
                limit: 100,
                ..Default::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(with_expired.items.len(), 6);
    // Numbered pages: a count with the same filters, and an offset.
    let bulk = |include_expired, offset, limit| ListQuery {
        label: Some("bulk"),
        include_expired,
        cursor: None,
        offset,
        limit,
        ..Default::default()
    };
    assert_eq!(
        s.count_credentials(&a.id, &bulk(false, 0, 1), NOW)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        s.count_credentials(&a.id, &bulk(true, 0, 1), NOW)
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        s.count_credentials(&b.id, &bulk(true, 0, 1), NOW)
            .await
            .unwrap(),
        0
    );
    let third: Vec<String> = s
        .list_credentials(&a.id, &bulk(true, 2, 2), NOW)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.id.into_string())
        .collect();
    let ids: Vec<String> = with_expired
        .items
        .iter()
        .map(|c| c.id.to_string())
        .collect();
    assert_eq!(third, ids[2..4]);
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
    // Filters: tag (whole tags, case-insensitive, LIKE characters literal), state, search.
    let f = s.create_tenant("filters", NOW).await.unwrap();
    let tags_a = ["Video".to_string(), "eu_west".to_string()];
    let tags_b = ["video-2".to_string(), "100%".to_string()];
    for (u, label, tags, exp) in [
        ("Alice-1", Some("Room A"), &tags_a[..], None),
        ("bob", Some("lobby"), &tags_b[..], None),
        ("carol", None, &[][..], Some(NOW - 1)),
    ] {
        s.create_credential(
            &NewCredential {
                tags,
                ..cred(&f.id, u, label, exp)
            },
            NOW,
        )
        .await
        .unwrap();
    }
    let bob = s
        .credential_by_username(&f.id, "bob")
        .await
        .unwrap()
        .unwrap();
    s.set_credential_enabled(&f.id, &bob.id, false)
        .await
        .unwrap();
    let names = |q: ListQuery<'static>| {
        let f = f.id.clone();
        async move {
            let q = ListQuery { limit: 100, ..q };
            let mut v: Vec<String> = s
                .list_credentials(&f, &q, NOW)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|c| c.username)
                .collect();
            v.sort();
            let n = s.count_credentials(&f, &q, NOW).await.unwrap();
            assert_eq!(n as usize, v.len());
            v
        }
    };
    assert_eq!(
        names(ListQuery {
            tag: Some("video"),
            ..Default::default()
        })
        .await,
        ["Alice-1"]
    );
    assert!(names(ListQuery {
        tag: Some("vid"),
        ..Default::default()
    })
    .await
    .is_empty());
    assert!(names(ListQuery {
        tag: Some("eu%"),
        ..Default::default()
    })
    .await
    .is_empty());
    assert!(names(ListQuery {
        tag: Some("eu-west"),
        ..Default::default()
    })
    .await
    .is_empty());
    assert_eq!(
        names(ListQuery {
            tag: Some("EU_WEST"),
            ..Default::default()
        })
        .await,
        ["Alice-1"]
    );
    assert_eq!(
        names(ListQuery {
            tag: Some("100%"),
            ..Default::default()
        })
        .await,
        ["bob"]
    );
    let st = |state| ListQuery {
        state: Some(state),
        include_expired: true,
        ..Default::default()
    };
    assert_eq!(names(st(CredentialState::Enabled)).await, ["Alice-1"]);
    assert_eq!(names(st(CredentialState::Disabled)).await, ["bob"]);
    assert_eq!(names(st(CredentialState::Expired)).await, ["carol"]);
    let search = |t| ListQuery {
        search: Some(t),
        include_expired: true,
        ..Default::default()
    };
    assert_eq!(names(search("ALICE")).await, ["Alice-1"]);
    assert_eq!(names(search("lob")).await, ["bob"]);
    assert_eq!(names(search("o")).await, ["Alice-1", "bob", "carol"]);
    assert!(names(search("_")).await.is_empty());
    assert_eq!(names(search("-")).await, ["Alice-1"]);
    s.delete_tenant(&f.id).await.unwrap();

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
    assert!(s
        .credential_by_username(&a.id, &u1)
        .await
        .unwrap()
        .is_none());
    let other = format!("bulkb-{suffix}");
    s.create_credential(&cred(&b.id, &other, Some("bulk"), None), NOW)
        .await
        .unwrap();
    assert_eq!(
        s.delete_credentials_by_label(&a.id, "bulk")
            .await
            .unwrap()
            .len(),
        6
    );
    assert!(s
        .credential_by_username(&b.id, &other)
        .await
        .unwrap()
        .is_some());

    // Usage: exact additions per hour, per tenant.
    let hour = NOW / 3600;
    let d = |cred: &str, h: i64, bytes: i64| UsageDelta {
        tenant_id: a.id.clone(),
        credential_id: cred.to_string(),
        user_id: String::new(),
        hour: h,
        counters: Counters {
            c2s_bytes: bytes,
            s2c_bytes: 2 * bytes,
            c2s_packets: 1,
            s2c_packets: 2,
            allocations: 1,
            ..Default::default()
        },
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
    let c = c1h.counters;
    assert_eq!(
        (c.c2s_bytes, c.s2c_bytes, c.c2s_packets, c.allocations),
        (123, 246, 2, 2)
    );
    assert_eq!(c.total_bytes(), 369);
    assert_eq!(s.usage(&a.id, hour + 1, hour + 2).await.unwrap().len(), 1);
    assert!(s.usage(&b.id, hour, hour + 2).await.unwrap().is_empty());
    // Paged by key: credentials c1, c2 in order; a page after c1; by user (empty here).
    let page = |key, after: Option<&'static str>, limit| {
        let id = a.id.clone();
        async move {
            s.usage_keys(&id, hour, hour + 2, key, after, limit)
                .await
                .unwrap()
        }
    };
    assert_eq!(page(UsageKey::Credential, None, 10).await, ["c1", "c2"]);
    assert_eq!(page(UsageKey::Credential, None, 1).await, ["c1"]);
    assert_eq!(page(UsageKey::Credential, Some("c1"), 10).await, ["c2"]);
    assert_eq!(page(UsageKey::User, None, 10).await, [""]);
    // Outside the range a key has no usage: c1's second hour alone.
    assert_eq!(
        s.usage_keys(&a.id, hour + 1, hour + 2, UsageKey::Credential, None, 10)
            .await
            .unwrap(),
        ["c1"]
    );
    let of_c2 = s
        .usage_of(&a.id, hour, hour + 2, UsageKey::Credential, &["c2".into()])
        .await
        .unwrap();
    assert_eq!(of_c2.len(), 1);
    assert_eq!(of_c2[0].counters.c2s_bytes, 5);
    let of_both = s
        .usage_of(
            &a.id,
            hour,
            hour + 2,
            UsageKey::Credential,
            &["c1".into(), "c2".into()],
        )
        .await
        .unwrap();
    assert_eq!(of_both.len(), 3);
    // Large values do not overflow.
    s.add_usage(&[d("big", hour, 1 << 40), d("big", hour, 1 << 40)])
        .await
        .unwrap();
    let big = s.usage(&a.id, hour, hour + 1).await.unwrap();
    assert_eq!(
        big.iter()
            .find(|r| r.credential_id == "big")
            .unwrap()
            .counters
            .c2s_bytes,
        1 << 41
    );
    // Rollups agree with the hourly rows: the tenant's hours, and totals by key over whole
    // months (the monthly rollup) and over part of a month (summed from the hourly rows),
    // with the stored credential's username and label.
    let hours = s.usage_by_hour(&a.id, hour, hour + 2).await.unwrap();
    assert_eq!(hours.len(), 2);
    for h in [hour, hour + 1] {
        let mut want = Counters::default();
        for r in s.usage(&a.id, h, h + 1).await.unwrap() {
            want.add(&r.counters);
        }
        let got = hours.iter().find(|r| r.hour == h).unwrap();
        assert_eq!((got.counters, got.credential_id.as_str()), (want, ""));
    }
    assert!(s
        .usage_by_hour(&b.id, hour, hour + 2)
        .await
        .unwrap()
        .is_empty());
    let named = s
        .create_credential(&cred(&a.id, "rollup", Some("team"), None), NOW)
        .await
        .unwrap();
    let month = calendar::month_start(hour);
    let next = calendar::month_start(month + 24 * 32);
    let after_next = calendar::month_start(next + 24 * 32);
    s.add_usage(&[
        UsageDelta {
            user_id: "u1".into(),
            ..d(&named.id, hour, 3)
        },
        d("c1", next + 5, 1000),
    ])
    .await
    .unwrap();
    let whole = s.usage_by_key(&a.id, month, next).await.unwrap();
    assert_eq!(whole, s.usage_by_key(&a.id, hour, hour + 2).await.unwrap());
    let keys: Vec<(&str, &str, i64)> = whole
        .iter()
        .map(|k| (k.credential_id.as_str(), k.user_id.as_str(), k.bytes))
        .collect();
    let mut want = vec![
        ("big", "", 3 * (2 << 40)),
        ("c1", "", 3 * 130),
        ("c2", "", 3 * 5),
        (named.id.as_str(), "u1", 3 * 3),
    ];
    want.sort();
    assert_eq!(keys, want);
    let n = whole.iter().find(|k| k.credential_id == *named.id).unwrap();
    assert_eq!(
        (n.username.as_deref(), n.label.as_deref()),
        (Some("rollup"), Some("team"))
    );
    assert_eq!(whole[1].username, None, "c1 is not a stored credential");
    // Two months: the second month's usage adds in; a range inside one month matches.
    let two = s.usage_by_key(&a.id, month, after_next).await.unwrap();
    let c1 = two.iter().find(|k| k.credential_id == "c1").unwrap();
    assert_eq!(c1.bytes, 3 * 1130);
    let later = s.usage_by_key(&a.id, next, next + 6).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].bytes, 3 * 1000);

    // Tenant secrets: rotation with overlap.
    s.add_tenant_secret(&a.id, b"one", NOW).await.unwrap();
    s.expire_tenant_secrets(&a.id, NOW + 30).await.unwrap();
    s.add_tenant_secret(&a.id, b"two", NOW + 1).await.unwrap();
    let live: Vec<_> = s
        .live_tenant_secrets(NOW + 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|x| x.tenant_id == a.id)
        .map(|x| x.secret)
        .collect();
    assert_eq!(live, vec![b"two".to_vec(), b"one".to_vec()]);
    assert_eq!(
        s.live_tenant_secrets(NOW + 31)
            .await
            .unwrap()
            .iter()
            .filter(|x| x.tenant_id == a.id)
            .count(),
        1
    );

    // Revocations lapse by themselves.
    let r = Revocation {
        tenant_id: a.id.clone(),
        kind: RevocationKind::User,
        value: "u1".into(),
        created_at: NOW,
        expires_at: NOW + 5,
    };
    s.add_revocation(&r).await.unwrap();
    s.add_revocation(&r).await.unwrap();
    assert_eq!(s.live_revocations(Some(&a.id), NOW).await.unwrap(), vec![r]);
    assert!(s
        .live_revocations(Some(&a.id), NOW + 5)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .live_revocations(Some(&b.id), NOW)
        .await
        .unwrap()
        .is_empty());

    // Allocation log: inserted at start, completed at end.
    let mut rec = AllocationRecord {
        id: format!("alloc-{suffix}"),
        tenant_id: a.id.clone(),
        username: "u".into(),
        client: "127.0.0.1:5000".into(),
        transport: "udp".into(),
        relay: "127.0.0.1:50000".into(),
        started_at: NOW,
        ..Default::default()
    };
    s.upsert_allocations(std::slice::from_ref(&rec))
        .await
        .unwrap();
    assert_eq!(
        s.live_allocations(&a.id, 10).await.unwrap(),
        vec![rec.clone()]
    );
    rec.ended_at = Some(NOW + 9);
    rec.s2p_bytes = 1234;
    rec.peers = 2;
    s.upsert_allocations(std::slice::from_ref(&rec))
        .await
        .unwrap();
    assert_eq!(
        s.list_allocations(&a.id, NOW, NOW + 1, 10).await.unwrap(),
        vec![rec]
    );
    assert!(s
        .list_allocations(&b.id, NOW, NOW + 1, 10)
        .await
        .unwrap()
        .is_empty());
    // A batch: many records in one write (more than one statement's worth), and a record
    // started and ended within one batch (the last of an id counts).
    let many: Vec<AllocationRecord> = (0..2500)
        .map(|i| AllocationRecord {
            id: format!("batch-{suffix}-{i:05}"),
            tenant_id: b.id.clone(),
            started_at: NOW + 100,
            ..Default::default()
        })
        .collect();
    let mut ended = many[7].clone();
    ended.ended_at = Some(NOW + 160);
    s.upsert_allocations(&[many.clone(), vec![ended.clone()]].concat())
        .await
        .unwrap();
    let logged = s
        .list_allocations(&b.id, NOW + 100, NOW + 101, 5000)
        .await
        .unwrap();
    assert_eq!(logged.len(), 2500);
    assert_eq!(logged.iter().find(|r| r.id == ended.id), Some(&ended));
    // Live: the 2,499 without an end, at most the limit.
    assert!(s.live_allocations(&a.id, 10).await.unwrap().is_empty());
    let live = s.live_allocations(&b.id, 100_000).await.unwrap();
    assert_eq!(live.len(), 2499);
    assert!(live.iter().all(|r| r.ended_at.is_none()));
    assert_eq!(s.live_allocations(&b.id, 3).await.unwrap().len(), 3);

    // Audit log, per tenant and the operator's own.
    let e = AuditEntry {
        id: format!("aud-{suffix}"),
        tenant_id: Some(a.id.clone()),
        at: NOW,
        actor: "key_x".into(),
        action: "credential.create".into(),
        target: "cred_x".into(),
        detail: "{}".into(),
    };
    s.add_audit(&e).await.unwrap();
    assert_eq!(
        s.list_audit(Some(&a.id), NOW, NOW + 1, 10).await.unwrap(),
        vec![e]
    );
    assert!(s
        .list_audit(Some(&b.id), NOW, NOW + 1, 10)
        .await
        .unwrap()
        .is_empty());

    // Quotas, notifications and alerts that fire once per period.
    let q = Quota {
        tenant_id: a.id.clone(),
        scope: QuotaScope::Tenant,
        period: QuotaPeriod::Month,
        bytes_per_period: Some(1000),
        thresholds: "[]".into(),
        ..Default::default()
    };
    s.put_quota(&q).await.unwrap();
    s.put_quota(&q).await.unwrap();
    assert_eq!(s.list_quotas(Some(&a.id)).await.unwrap(), vec![q.clone()]);
    assert!(s.list_quotas(Some(&b.id)).await.unwrap().is_empty());
    let n = NotificationSettings {
        tenant_id: a.id.clone(),
        webhook_url: Some("http://127.0.0.1:9/h".into()),
        webhook_secret: Some("s".into()),
        email_to: None,
        webhook_format: WebhookFormat::Turnpike,
    };
    s.put_notifications(&n).await.unwrap();
    assert_eq!(s.get_notifications(&a.id).await.unwrap(), Some(n.clone()));
    let metered = NotificationSettings {
        webhook_format: WebhookFormat::Metered,
        email_to: Some("a@example.com, b@example.com".into()),
        ..n
    };
    s.put_notifications(&metered).await.unwrap();
    assert_eq!(s.get_notifications(&a.id).await.unwrap(), Some(metered));
    assert_eq!(s.get_notifications(&b.id).await.unwrap(), None);
    let alert = AlertEvent {
        id: format!("alr-{suffix}"),
        tenant_id: a.id.clone(),
        scope: QuotaScope::Tenant,
        period_start: NOW,
        percent: 80,
        action: "notify".into(),
        bytes_used: 800,
        bytes_quota: 1000,
        at: NOW,
    };
    assert!(s.record_alert(&alert).await.unwrap());
    let again = AlertEvent {
        id: format!("alr2-{suffix}"),
        ..alert.clone()
    };
    assert!(!s.record_alert(&again).await.unwrap());
    assert_eq!(s.list_alerts(&a.id).await.unwrap(), vec![alert]);
    s.delete_quota(&a.id, &QuotaScope::Tenant).await.unwrap();
    assert!(matches!(
        s.delete_quota(&a.id, &QuotaScope::Tenant).await,
        Err(StoreError::NotFound)
    ));

    // Settings.
    assert_eq!(s.get_setting(&a.id, "k").await.unwrap(), None);
    s.put_setting(&a.id, "k", "v1").await.unwrap();
    s.put_setting(&a.id, "k", "v2").await.unwrap();
    assert_eq!(
        s.get_setting(&a.id, "k").await.unwrap().as_deref(),
        Some("v2")
    );
    assert_eq!(s.get_setting(&b.id, "k").await.unwrap(), None);

    // Disconnect requests: recorded with an id, read back by time (oldest first), pruned.
    let node = format!("node-{suffix}");
    let req = |at: i64, value: &str| DisconnectRequest {
        id: 0,
        node: node.clone(),
        kind: DisconnectKind::Credential,
        tenant_id: String::new(),
        value: value.into(),
        at,
    };
    let d1 = s.add_disconnect(&req(NOW - 7200, "old")).await.unwrap();
    let d2 = s.add_disconnect(&req(NOW, "cred_x")).await.unwrap();
    assert!(d2 > d1);
    let mine =
        |v: Vec<DisconnectRequest>| v.into_iter().filter(|d| d.node == node).collect::<Vec<_>>();
    let recent = mine(s.recent_disconnects(NOW - 60).await.unwrap());
    assert_eq!(
        recent,
        vec![DisconnectRequest {
            id: d2,
            ..req(NOW, "cred_x")
        }]
    );
    assert_eq!(
        mine(s.recent_disconnects(NOW - 7200).await.unwrap()).len(),
        2
    );
    assert!(s.prune_disconnects(NOW - 3600).await.unwrap() >= 1);
    assert_eq!(mine(s.recent_disconnects(0).await.unwrap()).len(), 1);

    // Deleting a tenant takes its data with it.
    s.delete_tenant(&b.id).await.unwrap();
    assert!(matches!(
        s.get_tenant(&b.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(s
        .credential_by_username(&b.id, &other)
        .await
        .unwrap()
        .is_none());

    // Projects: child tenants, names unique per parent, deleted with their parent (with their
    // credentials and keys).
    let parent = s.create_tenant("app", NOW).await.unwrap();
    assert_eq!(parent.parent_id, None);
    let p1 = s.create_child_tenant(&parent.id, "one", NOW).await.unwrap();
    assert_eq!(p1.parent_id.as_deref(), Some(parent.id.as_str()));
    assert_eq!(s.get_tenant(&p1.id).await.unwrap(), p1);
    assert!(matches!(
        s.create_child_tenant(&parent.id, "one", NOW).await,
        Err(StoreError::Conflict(_))
    ));
    // Another parent may use the name; top-level tenants are not projects.
    let other = s.create_tenant("other app", NOW).await.unwrap();
    s.create_child_tenant(&other.id, "one", NOW).await.unwrap();
    s.create_tenant("one", NOW).await.unwrap();
    let p2 = s
        .create_child_tenant(&parent.id, "two", NOW + 1)
        .await
        .unwrap();
    assert_eq!(
        s.child_tenants(&parent.id).await.unwrap(),
        vec![p1.clone(), p2.clone()]
    );
    assert!(matches!(
        s.rename_tenant(&p2.id, "one").await,
        Err(StoreError::Conflict(_))
    ));
    s.rename_tenant(&p2.id, "deux").await.unwrap();
    assert_eq!(s.get_tenant(&p2.id).await.unwrap().name, "deux");
    let pc = s
        .create_credential(&cred(&p1.id, &format!("pc-{suffix}"), None, None), NOW)
        .await
        .unwrap();
    let pk_hash = format!("pk-{suffix}").into_bytes();
    s.create_api_key(&key(Some(&p1.id), &pk_hash, KeyKind::Project, None), NOW)
        .await
        .unwrap();
    assert_eq!(
        s.api_key_by_hash(&pk_hash).await.unwrap().map(|k| k.kind),
        Some(KeyKind::Project)
    );
    s.delete_tenant(&parent.id).await.unwrap();
    assert!(matches!(
        s.get_tenant(&p1.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(s.child_tenants(&parent.id).await.unwrap().is_empty());
    assert!(matches!(
        s.get_credential(&p1.id, &pc.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.api_key_by_hash(&pk_hash).await.unwrap(), None);

    // The client deny list.
    let net = format!("198.51.100.{}/32", a.id.as_bytes()[5]);
    let d = DeniedClient {
        id: format!("deny-{suffix}"),
        cidr: net.clone(),
        note: Some("probe".into()),
        created_at: NOW,
    };
    s.add_denied_client(&d).await.unwrap();
    assert!(matches!(
        s.add_denied_client(&DeniedClient {
            id: format!("deny2-{suffix}"),
            ..d.clone()
        })
        .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.list_denied_clients().await.unwrap().contains(&d));
    s.delete_denied_client(&d.id).await.unwrap();
    assert!(!s.list_denied_clients().await.unwrap().contains(&d));
    assert!(matches!(
        s.delete_denied_client(&d.id).await,
        Err(StoreError::NotFound)
    ));
    change_feed(s).await;
    suspension(s).await;
    nodes(s).await;
    fleet_keys(s).await;
    billing(s).await;
    deliveries(s).await;
}

/// The notification delivery log: newest first, per tenant, one event's latest attempt,
/// pruned by age and per-tenant count.
async fn deliveries(s: &impl Store) {
    let t = s.create_tenant("deliveries", NOW).await.unwrap();
    let u = s.create_tenant("deliveries-2", NOW).await.unwrap();
    let d = |tenant: &TenantId, id: &str, event: &str, at: i64, attempt: i64| Delivery {
        id: id.into(),
        tenant_id: tenant.clone(),
        event_id: event.into(),
        kind: "test".into(),
        channel: "webhook".into(),
        target: "hooks.example.com".into(),
        at,
        attempt,
        outcome: if attempt == 1 { "failed" } else { "delivered" }.into(),
        status: Some(if attempt == 1 { 500 } else { 200 }),
        error: None,
        body: "{}".into(),
    };
    s.add_delivery(&d(&t.id, "d1", "evt_a", NOW - 100, 1))
        .await
        .unwrap();
    s.add_delivery(&d(&t.id, "d2", "evt_a", NOW - 99, 2))
        .await
        .unwrap();
    s.add_delivery(&d(&t.id, "d3", "evt_b", NOW - 50, 1))
        .await
        .unwrap();
    s.add_delivery(&d(&u.id, "d4", "evt_c", NOW, 1))
        .await
        .unwrap();
    let ids = |v: Vec<Delivery>| v.into_iter().map(|x| x.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.list_deliveries(&t.id, 10).await.unwrap()),
        ["d3", "d2", "d1"]
    );
    assert_eq!(ids(s.list_deliveries(&t.id, 1).await.unwrap()), ["d3"]);
    let latest = s.delivery_of(&t.id, "evt_a").await.unwrap().unwrap();
    assert_eq!(latest, d(&t.id, "d2", "evt_a", NOW - 99, 2));
    assert_eq!(s.delivery_of(&u.id, "evt_a").await.unwrap(), None);
    // Older than NOW - 99 goes; then at most two per tenant... one here.
    assert_eq!(s.prune_tenant_logs(NOW - 99, 1).await.unwrap(), 2);
    assert_eq!(ids(s.list_deliveries(&t.id, 10).await.unwrap()), ["d3"]);
    assert_eq!(ids(s.list_deliveries(&u.id, 10).await.unwrap()), ["d4"]);

    // Refused TURN requests: rows of unknown tenants are skipped; newest first in a range.
    let f = |tenant: &str, id: &str, at: i64| AuthFailure {
        id: id.into(),
        tenant_id: tenant.into(),
        at,
        username: "alice".into(),
        client: "192.0.2.1:5000".into(),
        transport: "udp".into(),
        reason: "wrong password".into(),
    };
    s.add_auth_failures(&[
        f(&t.id, "f1", NOW - 10),
        f("ten_nobody", "f2", NOW - 5),
        f(&t.id, "f3", NOW - 1),
    ])
    .await
    .unwrap();
    let got = s
        .list_auth_failures(&t.id, NOW - 100, NOW, 10)
        .await
        .unwrap();
    assert_eq!(got, vec![f(&t.id, "f3", NOW - 1), f(&t.id, "f1", NOW - 10)]);
    assert_eq!(
        s.list_auth_failures(&t.id, NOW - 5, NOW, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(s
        .list_auth_failures(&u.id, 0, NOW, 10)
        .await
        .unwrap()
        .is_empty());
    // Pruned with the delivery log: beyond the newest one per tenant.
    assert_eq!(s.prune_tenant_logs(0, 1).await.unwrap(), 1);
    assert_eq!(
        s.list_auth_failures(&t.id, 0, NOW, 10).await.unwrap().len(),
        1
    );
    s.delete_tenant(&t.id).await.unwrap();
    s.delete_tenant(&u.id).await.unwrap();
}

/// Price plans and closed statements: upsert, the closer's view, insert-only statements, and
/// the usage figures a statement is computed from.
async fn billing(s: &impl Store) {
    let t = s.create_tenant("billing", NOW).await.unwrap();
    assert_eq!(s.get_price_plan(&t.id).await.unwrap(), None);
    let mut plan = PricePlan {
        tenant_id: t.id.clone(),
        currency: "EUR".into(),
        per_gb_micros: 400_000,
        per_allocation_hour_micros: 1_000,
        included_bytes: 1_000_000_000,
        billing_day: 1,
        first_month: "2027-01".into(),
        updated_at: NOW,
    };
    s.put_price_plan(&plan).await.unwrap();
    plan.per_gb_micros = 350_000;
    s.put_price_plan(&plan).await.unwrap();
    assert_eq!(s.get_price_plan(&t.id).await.unwrap(), Some(plan.clone()));
    let due = s.price_plans().await.unwrap();
    let mine = due.iter().find(|p| p.plan.tenant_id == t.id).unwrap();
    assert_eq!((&mine.plan, mine.last_month.as_deref()), (&plan, None));

    // Usage: user u1 in hours 10 and 20, u2 in hour 20; the split at hour 15.
    let base = NOW / 3600;
    let d = |user: &str, h: i64, bytes: i64, secs: i64| UsageDelta {
        tenant_id: t.id.clone(),
        credential_id: format!("cred-{user}"),
        user_id: user.to_string(),
        hour: base + h,
        counters: Counters {
            c2s_bytes: bytes,
            s2p_bytes: bytes,
            allocations: 1,
            allocation_seconds: secs,
            ..Default::default()
        },
    };
    s.add_usage(&[
        d("u1", 10, 100, 60),
        d("u1", 20, 7, 30),
        d("u2", 20, 1 << 40, 5),
    ])
    .await
    .unwrap();
    let u = s.billing_usage(&t.id, base + 15, base + 21).await.unwrap();
    assert_eq!(
        u,
        BillingUsage {
            bytes_before: 200,
            allocation_seconds_before: 60,
            bytes_within: 14 + (2 << 40),
            allocation_seconds_within: 35,
            allocations_within: 2,
        }
    );
    // Hours at or after the end do not count.
    let u = s.billing_usage(&t.id, base + 15, base + 20).await.unwrap();
    assert_eq!((u.bytes_before, u.bytes_within), (200, 0));
    let users = s.usage_by_user(&t.id, base, base + 21).await.unwrap();
    let user = |id: &str, bytes, allocation_seconds| UserUsage {
        user_id: id.into(),
        bytes,
        allocation_seconds,
        ..UserUsage::default()
    };
    assert_eq!(users, vec![user("u1", 214, 90), user("u2", 2 << 40, 5)]);
    // Without a user id: one line per stored credential, with its username while it exists.
    let c = s
        .create_credential(&cred(&t.id, "bill-user", None, None), NOW)
        .await
        .unwrap();
    let anon = |cred: &str, bytes| UsageDelta {
        user_id: String::new(),
        credential_id: cred.to_string(),
        ..d("", 12, bytes, 0)
    };
    s.add_usage(&[anon(&c.id, 40), anon("cred_gone", 2)])
        .await
        .unwrap();
    let all = s.usage_by_user(&t.id, base, base + 21).await.unwrap();
    let mut anon_lines: Vec<_> = all
        .iter()
        .filter(|u| u.user_id.is_empty())
        .map(|u| (u.credential_id.as_str(), u.username.as_deref(), u.bytes))
        .collect();
    anon_lines.sort();
    let mut want = vec![
        ("cred_gone", None, 4),
        (c.id.as_str(), Some("bill-user"), 80),
    ];
    want.sort();
    assert_eq!(anon_lines, want);
    assert_eq!(&all[2..], &users[..], "user ids sort after the empty one");
    // Whole months read the monthly rollup: the same figures.
    let month = calendar::month_start(base);
    let next = calendar::month_start(base + 24 * 32);
    let whole = s.usage_by_user(&t.id, month, next).await.unwrap();
    assert_eq!(whole.len(), users.len() + 2);
    assert_eq!(&whole[2..], &users[..], "user ids sort after the empty one");

    let st = |month: &str, total: i64, body: &str| StoredStatement {
        summary: StatementSummary {
            tenant_id: t.id.clone(),
            month: month.into(),
            period_start: NOW,
            period_end: NOW + 10,
            currency: "EUR".into(),
            total_minor: total,
            closed_at: NOW + 20,
        },
        cumulative_bytes: 5,
        cumulative_allocation_seconds: 6,
        body: body.into(),
    };
    assert!(s.insert_statement(&st("2027-01", 12, "{}")).await.unwrap());
    // A second close of the same month (another node) changes nothing.
    assert!(!s
        .insert_statement(&st("2027-01", 99, "other"))
        .await
        .unwrap());
    assert!(s
        .insert_statement(&st("2027-03", 34, "{\"m\":3}"))
        .await
        .unwrap());
    assert_eq!(
        s.get_statement(&t.id, "2027-01").await.unwrap(),
        Some(st("2027-01", 12, "{}"))
    );
    assert_eq!(s.get_statement(&t.id, "2027-02").await.unwrap(), None);
    let before = s.statement_before(&t.id, "2027-03").await.unwrap().unwrap();
    assert_eq!(before.summary.month, "2027-01");
    assert_eq!(s.statement_before(&t.id, "2027-01").await.unwrap(), None);
    let list = s.list_statements(&t.id).await.unwrap();
    assert_eq!(
        list.iter()
            .map(|x| (x.month.as_str(), x.total_minor))
            .collect::<Vec<_>>(),
        vec![("2027-03", 34), ("2027-01", 12)]
    );
    let due = s.price_plans().await.unwrap();
    let mine = due.iter().find(|p| p.plan.tenant_id == t.id).unwrap();
    assert_eq!(mine.last_month.as_deref(), Some("2027-03"));

    s.delete_price_plan(&t.id).await.unwrap();
    assert!(matches!(
        s.delete_price_plan(&t.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.list_statements(&t.id).await.unwrap().len(), 2);
    s.delete_tenant(&t.id).await.unwrap();
    assert!(s.list_statements(&t.id).await.unwrap().is_empty());
}

/// The change feed: every write to what the relay holds is recorded by trigger, in order, with
/// the key to re-read; cascaded deletes too.
async fn change_feed(s: &impl Store) {
    let t = s.create_tenant("feed", NOW).await.unwrap();
    let start = s.latest_change().await.unwrap();
    let c = s
        .create_credential(&cred(&t.id, "feed-user", None, None), NOW)
        .await
        .unwrap();
    s.set_credential_enabled(&t.id, &c.id, false).await.unwrap();
    let got = s
        .credentials_by_ids(&[c.id.clone(), "cred_missing".into()])
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(!got[0].enabled && got[0].id == c.id);
    s.add_tenant_secret(&t.id, b"feed-secret", NOW)
        .await
        .unwrap();
    assert_eq!(s.live_tenant_secrets_of(&t.id, NOW).await.unwrap().len(), 1);
    s.add_revocation(&Revocation {
        tenant_id: t.id.clone(),
        kind: RevocationKind::User,
        value: "u1".into(),
        created_at: NOW,
        expires_at: NOW + 60,
    })
    .await
    .unwrap();
    s.put_quota(&Quota {
        tenant_id: t.id.clone(),
        scope: QuotaScope::Tenant,
        period: QuotaPeriod::Month,
        bytes_per_period: Some(1),
        max_allocations: None,
        max_bitrate_bps: None,
        throttle_bitrate_bps: None,
        thresholds: "[]".into(),
    })
    .await
    .unwrap();
    // A CIDR of this run's own (the PostgreSQL database outlives runs).
    let n = u8::from_str_radix(&t.id[t.id.len() - 2..], 16).unwrap_or(7);
    let d = DeniedClient {
        id: new_id("deny_"),
        cidr: format!("198.51.100.{n}/32"),
        note: None,
        created_at: NOW,
    };
    for old in s.list_denied_clients().await.unwrap() {
        if old.cidr == d.cidr {
            s.delete_denied_client(&old.id).await.unwrap();
        }
    }
    s.add_denied_client(&d).await.unwrap();
    s.delete_denied_client(&d.id).await.unwrap();
    let before_delete = s.latest_change().await.unwrap();
    // Deleting the tenant cascades to its rows: each cascaded delete is recorded too.
    s.delete_tenant(&t.id).await.unwrap();
    assert!(s
        .credentials_by_ids(std::slice::from_ref(&c.id))
        .await
        .unwrap()
        .is_empty());

    let ours = |ch: &Change| ch.key == *t.id || ch.key == *c.id || ch.key == d.id;
    let all = s.changes_since(start, 10_000).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "ascending");
    let (before, after): (Vec<_>, Vec<_>) = all
        .into_iter()
        .filter(ours)
        .partition(|ch| ch.seq <= before_delete);
    let kinds = |v: &[Change]| {
        v.iter()
            .map(|ch| (ch.entity, ch.key.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds(&before),
        vec![
            (ChangeEntity::Credential, c.id.to_string()),
            (ChangeEntity::Credential, c.id.to_string()),
            (ChangeEntity::TenantSecrets, t.id.to_string()),
            (ChangeEntity::Revocations, t.id.to_string()),
            (ChangeEntity::Quotas, t.id.to_string()),
            (ChangeEntity::DenyList, d.id.clone()),
            (ChangeEntity::DenyList, d.id.clone()),
        ]
    );
    let deleted = kinds(&after);
    for want in [
        (ChangeEntity::Credential, c.id.to_string()),
        (ChangeEntity::TenantSecrets, t.id.to_string()),
        (ChangeEntity::Revocations, t.id.to_string()),
        (ChangeEntity::Quotas, t.id.to_string()),
        (ChangeEntity::Tenant, t.id.to_string()),
    ] {
        assert!(deleted.contains(&want), "{want:?} missing from {deleted:?}");
    }
    // Paging, the bounds, and pruning nothing that is not old.
    assert_eq!(s.changes_since(start, 2).await.unwrap().len(), 2);
    let latest = s.latest_change().await.unwrap();
    assert!(latest >= after.last().unwrap().seq);
    assert!(s.changes_since(latest, 10).await.unwrap().is_empty());
    assert!(s.oldest_change().await.unwrap() <= before[0].seq);
    assert_eq!(s.prune_changes(0).await.unwrap(), 0);
    // By number: those that exist, in order.
    let wanted = [after[0].seq, before[0].seq, latest + 1000];
    let got: Vec<i64> = s
        .changes_at(&wanted)
        .await
        .unwrap()
        .iter()
        .map(|ch| ch.seq)
        .collect();
    assert_eq!(got, [before[0].seq, after[0].seq]);
    // Pruned to nothing, the feed still knows its high-water mark (a reader starting at 0
    // would take every number since as a hole).
    assert!(s.prune_changes(i64::MAX).await.unwrap() > 0);
    assert_eq!(s.oldest_change().await.unwrap(), 0);
    assert_eq!(s.latest_change().await.unwrap(), latest);
}

/// Suspending a tenant suspends its projects, reads back, goes through the change feed, and
/// resuming lifts it; an unknown tenant is `NotFound`.
async fn suspension(s: &impl Store) {
    let t = s.create_tenant("suspended", NOW).await.unwrap();
    let p = s
        .create_child_tenant(&t.id, "its project", NOW)
        .await
        .unwrap();
    let other = s.create_tenant("active", NOW).await.unwrap();
    assert_eq!(s.get_tenant(&t.id).await.unwrap().suspended_at, None);
    let before = s.latest_change().await.unwrap();
    s.suspend_tenant(&t.id, Some(NOW + 5)).await.unwrap();
    assert_eq!(
        s.get_tenant(&t.id).await.unwrap().suspended_at,
        Some(NOW + 5)
    );
    let listed = s.list_tenants().await.unwrap();
    assert!(listed
        .iter()
        .any(|x| x.id == t.id && x.suspended_at == Some(NOW + 5)));
    let mut want = vec![t.id.clone(), p.id.clone()];
    want.sort();
    assert_eq!(s.suspended_tenants().await.unwrap(), want);
    assert!(!s.suspended_tenants().await.unwrap().contains(&other.id));
    let ch = s.changes_since(before, 100).await.unwrap();
    assert!(
        ch.iter()
            .any(|c| c.entity == ChangeEntity::Tenant && c.key == t.id.as_str()),
        "{ch:?}"
    );
    s.suspend_tenant(&t.id, None).await.unwrap();
    assert!(s.suspended_tenants().await.unwrap().is_empty());
    // Allowed regions read back; none means any.
    assert_eq!(s.get_tenant(&t.id).await.unwrap().regions(), None);
    s.set_tenant_regions(&t.id, Some("eu-central,eu-west"))
        .await
        .unwrap();
    assert_eq!(
        s.get_tenant(&t.id).await.unwrap().regions(),
        Some(vec!["eu-central".to_string(), "eu-west".to_string()])
    );
    // The relay's list: the tenant's own, its project's inherited, and a project's own list
    // narrowed by its tenant's; a change goes through the feed.
    let before = s.latest_change().await.unwrap();
    s.set_tenant_regions(&p.id, Some("eu-west,us-east"))
        .await
        .unwrap();
    let ch = s.changes_since(before, 100).await.unwrap();
    assert!(
        ch.iter()
            .any(|c| c.entity == ChangeEntity::Tenant && c.key == p.id.as_str()),
        "{ch:?}"
    );
    let mut want = vec![
        (
            t.id.clone(),
            vec!["eu-central".to_string(), "eu-west".into()],
        ),
        (p.id.clone(), vec!["eu-west".to_string()]),
    ];
    want.sort();
    assert_eq!(s.tenant_regions().await.unwrap(), want);
    s.set_tenant_regions(&p.id, None).await.unwrap();
    let mut want = vec![
        (
            t.id.clone(),
            vec!["eu-central".to_string(), "eu-west".into()],
        ),
        (
            p.id.clone(),
            vec!["eu-central".to_string(), "eu-west".into()],
        ),
    ];
    want.sort();
    assert_eq!(s.tenant_regions().await.unwrap(), want);
    // A project created under a restricted tenant goes through the feed too, so every relay
    // re-reads the restricted (and suspended) lists with it in them.
    let before = s.latest_change().await.unwrap();
    let p2 = s
        .create_child_tenant(&t.id, "a later project", NOW)
        .await
        .unwrap();
    let ch = s.changes_since(before, 100).await.unwrap();
    assert!(
        ch.iter()
            .any(|c| c.entity == ChangeEntity::Tenant && c.key == p2.id.as_str()),
        "{ch:?}"
    );
    assert!(s
        .tenant_regions()
        .await
        .unwrap()
        .iter()
        .any(|(id, r)| id == &p2.id && r.len() == 2));
    s.delete_tenant(&p2.id).await.unwrap();
    s.set_tenant_regions(&t.id, None).await.unwrap();
    assert_eq!(s.get_tenant(&t.id).await.unwrap().allowed_regions, None);
    assert!(s.tenant_regions().await.unwrap().is_empty());
    assert!(matches!(
        s.set_tenant_regions(&TenantId::from("ten_missing"), None)
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.get_tenant(&t.id).await.unwrap().suspended_at, None);
    assert!(matches!(
        s.suspend_tenant(&TenantId::from("ten_missing"), Some(NOW))
            .await,
        Err(StoreError::NotFound)
    ));
    s.delete_tenant(&t.id).await.unwrap();
    s.delete_tenant(&other.id).await.unwrap();
}

fn node(id: &str, region: &str, heartbeat_ms: i64) -> NodeRecord {
    NodeRecord {
        id: id.into(),
        name: format!("host-{id}"),
        region: region.into(),
        latitude: Some(50.11),
        longitude: Some(-8.68),
        version: "0.1.0".into(),
        urls: vec![
            "stun:192.0.2.1:3478".into(),
            "turn:192.0.2.1:3478?transport=udp".into(),
        ],
        addresses: vec!["192.0.2.1:3478".into()],
        tls_addresses: vec![],
        tls_domain: None,
        signal_url: Some("wss://192.0.2.1/v1/signal".into()),
        started_at: NOW,
        heartbeat_ms,
        interval_ms: 2000,
        draining: false,
        allocations: 3,
        capacity: 0,
        relayed_bps: 1_000_000_000_000,
        cpu_percent: 12.5,
    }
}

/// The node registry: a heartbeat inserts then replaces a node's row; rows read back exactly;
/// one node's row is removed at its stop, silent ones by pruning.
async fn nodes(s: &impl Store) {
    assert!(s.list_nodes().await.unwrap().is_empty());
    let a = node("n-a", "eu-central", 1_000);
    let mut b = node("n-b", "ap-south", 1_000);
    b.latitude = None;
    b.longitude = None;
    b.tls_domain = Some("turn.example.com".into());
    b.tls_addresses = vec!["[2001:db8::1]:443".into()];
    s.put_node(&a).await.unwrap();
    s.put_node(&b).await.unwrap();
    assert_eq!(s.list_nodes().await.unwrap(), [b.clone(), a.clone()]);
    let mut a2 = a.clone();
    a2.heartbeat_ms = 5_000;
    a2.draining = true;
    a2.allocations = 0;
    a2.started_at = NOW + 99; // not changed by a heartbeat
    s.put_node(&a2).await.unwrap();
    a2.started_at = NOW;
    assert_eq!(s.list_nodes().await.unwrap(), [b.clone(), a2.clone()]);
    // Allocations of a node that goes silent stay open until it is pruned; then they end at
    // its last heartbeat (n-b's, 1 s), others stay open.
    let owner = s.create_tenant("node-allocs", NOW).await.unwrap();
    let open = |id: &str, node: &str| AllocationRecord {
        id: id.into(),
        tenant_id: owner.id.clone(),
        username: "u".into(),
        started_at: 0,
        node_id: node.into(),
        ..Default::default()
    };
    s.upsert_allocations(&[
        open("alc-b", "n-b"),
        open("alc-a", "n-a"),
        open("alc-old", ""),
    ])
    .await
    .unwrap();
    assert_eq!(s.prune_nodes(2_000).await.unwrap(), 1);
    assert_eq!(s.list_nodes().await.unwrap(), [a2]);
    let live: Vec<String> = s
        .live_allocations(&owner.id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(live.len(), 2, "{live:?}");
    assert!(live.contains(&"alc-a".to_string()) && live.contains(&"alc-old".to_string()));
    let ended = s.list_allocations(&owner.id, 0, NOW, 10).await.unwrap();
    let b_row = ended.iter().find(|r| r.id == "alc-b").unwrap();
    assert_eq!((b_row.ended_at, b_row.node_id.as_str()), (Some(1), "n-b"));
    // Usage as relayed by a node: the usual tables, and per node and region.
    let t = s.create_tenant("node-usage", NOW).await.unwrap();
    let d = |bytes: i64| UsageDelta {
        tenant_id: t.id.clone(),
        credential_id: String::new(),
        user_id: "u".into(),
        hour: NOW / 3600,
        counters: Counters {
            c2s_bytes: bytes,
            ..Default::default()
        },
    };
    s.add_usage_at(&[d(10), d(5)], "n-a", "eu-central")
        .await
        .unwrap();
    s.add_usage_at(&[d(7)], "n-b", "ap-south").await.unwrap();
    let rows = s
        .node_usage(&t.id, NOW / 3600, NOW / 3600 + 1)
        .await
        .unwrap();
    let got: Vec<(&str, &str, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.credential_id.as_str(),
                r.user_id.as_str(),
                r.counters.c2s_bytes,
            )
        })
        .collect();
    assert_eq!(got, [("n-a", "eu-central", 15), ("n-b", "ap-south", 7)]);
    let all = s.usage(&t.id, NOW / 3600, NOW / 3600 + 1).await.unwrap();
    assert_eq!(all.iter().map(|r| r.counters.c2s_bytes).sum::<i64>(), 22);
    s.delete_tenant(&t.id).await.unwrap();
    assert!(s.delete_node("n-a").await.unwrap());
    assert!(!s.delete_node("n-a").await.unwrap());
    assert!(s.list_nodes().await.unwrap().is_empty());
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
    assert!(!again.list_tenants().await.unwrap().is_empty());
}

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A SQLite store in a new temporary directory (kept alive by the returned guard), at the
/// returned path, holding one tenant `t`.
async fn sqlite_with_a_tenant() -> (tempfile::TempDir, std::path::PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("turnpike.db");
    let s = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    s.create_tenant("t", NOW).await.unwrap();
    (dir, path, s)
}

#[cfg(unix)]
#[tokio::test]
async fn sqlite_files_are_private() {
    let (dir, path, s) = sqlite_with_a_tenant().await;
    for suffix in ["", "-wal", "-shm"] {
        let p = dir.path().join(format!("turnpike.db{suffix}"));
        assert_eq!(mode(&p), 0o600, "{suffix}");
    }
    drop(s);
    // A file readable by others is made private when opened.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _again = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[tokio::test]
async fn sqlite_file_removed_or_replaced_refuses_writes() {
    for replace in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("turnpike.db");
        let s = AnyStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let t = s.create_tenant("t", NOW).await.unwrap();
        assert!(s.database_ok());
        if replace {
            std::fs::copy(&path, dir.path().join("copy")).unwrap();
            std::fs::rename(dir.path().join("copy"), &path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
        assert!(!s.database_ok());
        assert!(matches!(
            s.create_tenant("u", NOW).await,
            Err(StoreError::DatabaseLost)
        ));
        assert!(matches!(
            s.add_usage(&[UsageDelta::default()]).await,
            Err(StoreError::DatabaseLost)
        ));
        // Reads still answer from the open file.
        assert_eq!(s.get_tenant(&t.id).await.unwrap(), t);
    }
    let mem = AnyStore::connect("sqlite::memory:").await.unwrap();
    assert!(mem.database_ok());
}

/// A database made by the first migrations (usernames unique globally) keeps its credentials
/// and their publishable keys when migrated to usernames unique per tenant.
#[tokio::test]
async fn sqlite_upgrade_keeps_credentials_and_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("turnpike.db").display());
    {
        let opts = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        let mut old = sqlx::migrate!("migrations/sqlite");
        old.migrations = old.migrations[..3].to_vec().into();
        old.run(&pool).await.unwrap();
        for q in [
            "INSERT INTO tenants (id, name, created_at) VALUES ('ten_a', 'a', 1)",
            "INSERT INTO credentials (id, tenant_id, username, key_md5, key_sha256, created_at) \
             VALUES ('cred_a', 'ten_a', 'alice', x'01', x'02', 1)",
            "INSERT INTO api_keys (id, tenant_id, kind, credential_id, allowed_origins, key_hash, \
             prefix, created_at) VALUES ('key_p', 'ten_a', 'publishable', 'cred_a', \
             'https://a.example', x'09', 'tpp_', 1)",
            "INSERT INTO api_keys (id, tenant_id, kind, key_hash, prefix, created_at) \
             VALUES ('key_s', 'ten_a', 'secret', x'08', 'tps_', 1)",
        ] {
            sqlx::query(q).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let s = SqliteStore::connect(&url).await.unwrap();
    let k = s
        .api_key_by_hash(&[9])
        .await
        .unwrap()
        .expect("publishable key kept");
    assert_eq!(k.credential_id.as_deref(), Some("cred_a"));
    assert_eq!(k.allowed_origins, vec!["https://a.example".to_string()]);
    assert!(s.api_key_by_hash(&[8]).await.unwrap().is_some());
    assert_eq!(
        s.get_credential(&"ten_a".into(), &"cred_a".into())
            .await
            .unwrap()
            .username,
        "alice"
    );
    // Usernames are now unique per tenant, and foreign keys still hold.
    let b = s.create_tenant("b", NOW).await.unwrap();
    s.create_credential(
        &NewCredential {
            key_sha256: &[7u8; 32],
            ..cred(&b.id, "alice", None, None)
        },
        NOW,
    )
    .await
    .unwrap();
    s.delete_tenant(&"ten_a".into()).await.unwrap();
    assert!(s.api_key_by_hash(&[9]).await.unwrap().is_none());
}

/// Usage recorded before the rollups existed is rolled up when the database is upgraded.
#[tokio::test]
async fn sqlite_upgrade_rolls_up_earlier_usage() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("turnpike.db").display());
    let hour = NOW / 3600;
    let next = calendar::month_start(calendar::month_start(hour) + 24 * 32);
    {
        let opts = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        let mut old = sqlx::migrate!("migrations/sqlite");
        old.migrations = old.migrations[..8].to_vec().into();
        old.run(&pool).await.unwrap();
        for (cred, h, bytes) in [
            ("c1", hour, 10),
            ("c1", hour + 1, 20),
            ("c2", hour, 5),
            ("c1", next, 7),
        ] {
            sqlx::query(
                "INSERT INTO usage_hourly (tenant_id, credential_id, user_id, hour, c2s_bytes) \
                 VALUES ('ten_a', $1, '', $2, $3)",
            )
            .bind(cred)
            .bind(h)
            .bind(bytes)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let s = SqliteStore::connect(&url).await.unwrap();
    let t = TenantId::from("ten_a");
    let hours = s.usage_by_hour(&t, hour, next + 1).await.unwrap();
    let got: Vec<(i64, i64)> = hours
        .iter()
        .map(|r| (r.hour, r.counters.c2s_bytes))
        .collect();
    assert_eq!(got, [(hour, 15), (hour + 1, 20), (next, 7)]);
    let month = calendar::month_start(hour);
    let keys = s.usage_by_key(&t, month, next).await.unwrap();
    let got: Vec<(&str, i64)> = keys
        .iter()
        .map(|k| (k.credential_id.as_str(), k.bytes))
        .collect();
    assert_eq!(got, [("c1", 30), ("c2", 5)]);
}

/// Kinds are typed: what this version wrote reads back as the same enum, and a revocation or
/// disconnect request of a kind it does not know (written by a newer node) is left out rather
/// than failing the whole read.
#[tokio::test]
async fn kinds_read_back_typed_and_unknown_ones_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("turnpike.db").display());
    let s = SqliteStore::connect(&url).await.unwrap();
    let t = s.create_tenant("t", NOW).await.unwrap();
    let q = Quota {
        tenant_id: t.id.clone(),
        scope: QuotaScope::Credential("cred_x".into()),
        period: QuotaPeriod::Day,
        thresholds: "[]".into(),
        ..Default::default()
    };
    s.put_quota(&q).await.unwrap();
    assert_eq!(s.list_quotas(Some(&t.id)).await.unwrap(), vec![q]);
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for sql in [
        "INSERT INTO revocations (tenant_id, kind, value, created_at, expires_at) \
         VALUES ($1, 'future', 'x', 1, 9999999999)",
        "INSERT INTO disconnect_requests (node, kind, tenant_id, value, at) \
         VALUES ('n', 'future', $1, 'x', 1800000000)",
    ] {
        sqlx::query(sql).bind(&t.id).execute(&pool).await.unwrap();
    }
    let r = Revocation {
        tenant_id: t.id.clone(),
        kind: RevocationKind::Username,
        value: "1800000100:t".into(),
        created_at: NOW,
        expires_at: NOW + 100,
    };
    s.add_revocation(&r).await.unwrap();
    assert_eq!(s.live_revocations(Some(&t.id), NOW).await.unwrap(), vec![r]);
    let d = DisconnectRequest {
        id: 0,
        node: "m".into(),
        kind: DisconnectKind::User,
        tenant_id: t.id.to_string(),
        value: "u".into(),
        at: NOW,
    };
    let id = s.add_disconnect(&d).await.unwrap();
    assert_eq!(
        s.recent_disconnects(NOW - 1).await.unwrap(),
        vec![DisconnectRequest { id, ..d }]
    );
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

/// The first node to ask for a fleet key stores its bytes; every later one gets the same.
async fn fleet_keys(s: &impl Store) {
    let first = s.fleet_key("nonce", &[7u8; 32], NOW).await.unwrap();
    assert_eq!(first, vec![7u8; 32]);
    let again = s.fleet_key("nonce", &[9u8; 32], NOW + 1).await.unwrap();
    assert_eq!(again, vec![7u8; 32]);
    let other = s.fleet_key("other", &[1u8; 16], NOW).await.unwrap();
    assert_eq!(other, vec![1u8; 16]);
}

/// The file removed under a running store: reads keep answering from the file as opened (its
/// connections stay open), even many at once, and no connection creates a new, empty
/// database at the path (which "no such table" errors and the next start would take for the
/// real one); writes are refused.
#[tokio::test]
async fn a_removed_sqlite_file_is_not_recreated() {
    let (_dir, path, s) = sqlite_with_a_tenant().await;
    std::fs::remove_file(&path).unwrap();
    let (a, b, c, d, e, f, g, h) = tokio::join!(
        s.list_tenants(),
        s.list_tenants(),
        s.list_tenants(),
        s.list_tenants(),
        s.list_tenants(),
        s.list_tenants(),
        s.list_tenants(),
        s.list_tenants()
    );
    for r in [a, b, c, d, e, f, g, h] {
        assert_eq!(r.unwrap().len(), 1);
    }
    assert!(!path.exists(), "a connection made a new database file");
    assert!(matches!(
        s.create_tenant("u", NOW).await,
        Err(StoreError::DatabaseLost)
    ));
}
