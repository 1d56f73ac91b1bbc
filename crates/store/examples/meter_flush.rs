//! What the meter writes per flush with many live allocations, timed against a real store
//! (issue 17: "the meter keeps up with 20,000 live allocations flushing every interval").
//!
//! Each live allocation has its own credential and user, so every flush writes one usage delta
//! per allocation (the hourly row and its rollups) in one transaction; the allocation log gets
//! one row per allocation when it starts (the first flush) and when it ends (the last). The
//! meter's own aggregation between flushes is in memory and not timed here.
//!
//! Usage: cargo run --release -p turnpike-store --example meter_flush -- URL [ALLOCATIONS] [FLUSHES]
//! Prints one JSON line.

use std::time::Instant;

use turnpike_store::{AllocationRecord, AnyStore, Counters, Store, UsageDelta};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .expect("usage: meter_flush URL [ALLOCATIONS] [FLUSHES]");
    let n: usize = args.get(2).map_or(20_000, |a| a.parse().expect("a count"));
    let flushes: usize = args.get(3).map_or(5, |a| a.parse().expect("a count"));
    assert!(
        flushes >= 2,
        "at least two flushes: the first starts, the last ends"
    );
    let store = AnyStore::connect(url).await.expect("the store");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64;
    let tenant = store
        .create_tenant(&format!("meter-{now}"), now)
        .await
        .expect("a tenant");
    let record = |i: usize, ended: Option<i64>| AllocationRecord {
        id: format!("alc_bench{now:x}{i:06}"),
        tenant_id: tenant.id.clone(),
        credential_id: format!("cred_{i:06}"),
        user_id: format!("user-{i:06}"),
        username: format!("u{i:06}"),
        client: "192.0.2.1:50000".into(),
        transport: "udp".into(),
        relay: "198.51.100.1:49152".into(),
        started_at: now,
        ended_at: ended,
        c2s_bytes: 1_000_000,
        s2p_bytes: 1_000_000,
        p2s_bytes: 1_000_000,
        s2c_bytes: 1_000_000,
        peers: 1,
        node_id: "bench-node".into(),
    };
    let mut usage_ms = Vec::new();
    let mut log_ms = Vec::new();
    for f in 0..flushes {
        let deltas: Vec<UsageDelta> = (0..n)
            .map(|i| UsageDelta {
                tenant_id: tenant.id.clone(),
                credential_id: format!("cred_{i:06}"),
                user_id: format!("user-{i:06}"),
                hour: now / 3600,
                counters: Counters {
                    c2s_bytes: 250_000,
                    c2s_packets: 250,
                    s2p_bytes: 250_000,
                    s2p_packets: 250,
                    p2s_bytes: 250_000,
                    p2s_packets: 250,
                    s2c_bytes: 250_000,
                    s2c_packets: 250,
                    ..Default::default()
                },
            })
            .collect();
        let t = Instant::now();
        store.add_usage(&deltas).await.expect("usage written");
        usage_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let records: Vec<AllocationRecord> = if f == 0 {
            (0..n).map(|i| record(i, None)).collect()
        } else if f == flushes - 1 {
            (0..n).map(|i| record(i, Some(now + 60))).collect()
        } else {
            Vec::new()
        };
        if !records.is_empty() {
            let t = Instant::now();
            store
                .upsert_allocations(&records)
                .await
                .expect("allocation log written");
            log_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let mut sorted = usage_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let worst = sorted[sorted.len() - 1];
    let log_worst = log_ms.iter().copied().fold(0.0, f64::max);
    println!(
        "{{\"allocations\": {n}, \"flushes\": {flushes}, \"usage_flush_ms_median\": {median:.1}, \
         \"usage_flush_ms_max\": {worst:.1}, \"usage_rows_per_s\": {:.0}, \
         \"allocation_log_ms_max\": {log_worst:.1}, \"allocation_rows_per_s\": {:.0}}}",
        n as f64 / (median / 1000.0),
        n as f64 / (log_worst / 1000.0),
    );
}
