//! The PostgreSQL side of signalling across nodes: room membership (table `signal_members`),
//! bus payloads too large for `NOTIFY` (`signal_payloads`), node liveness (`signal_nodes`) and
//! the `LISTEN`/`NOTIFY` channel. The signalling crate decides what to do and when; this module
//! only runs the statements (times are passed in, unix seconds).

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::Row;

use crate::Result;

/// The `NOTIFY` channel of the room bus.
pub const CHANNEL: &str = "turnpike_signal";

/// A participant in `signal_members`. `rank` is assigned by the database at insertion (join
/// order across every node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub peer_id: String,
    pub identity: String,
    pub rank: u64,
}

/// A member removed because its node went silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostMember {
    pub room: String,
    pub peer_id: String,
}

/// The signalling tables of one database, on a small pool of their own (the bus must not
/// wait behind the control plane's queries).
#[derive(Debug, Clone)]
pub struct SignalDb {
    pool: PgPool,
}

impl SignalDb {
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new().max_connections(5).connect(url).await?;
        Ok(Self { pool })
    }

    /// A connection listening on [`CHANNEL`].
    pub async fn listen(&self) -> Result<Listener> {
        let mut inner = PgListener::connect_with(&self.pool).await?;
        inner.listen(CHANNEL).await?;
        Ok(Listener { inner })
    }

    /// Sends `payload` (under 8000 bytes) to every listener of [`CHANNEL`].
    pub async fn notify(&self, payload: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a payload too large for `NOTIFY`; returns its id.
    pub async fn put_payload(&self, body: &str, now: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO signal_payloads (body, at) VALUES ($1, $2) RETURNING id",
        )
        .bind(body)
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    /// A stored payload, if it is still there.
    pub async fn payload(&self, id: i64) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT body FROM signal_payloads WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Removes payloads stored before `at`; returns how many.
    pub async fn delete_payloads_before(&self, at: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM signal_payloads WHERE at < $1")
            .bind(at)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Adds a member on `node`; returns its rank.
    pub async fn add_member(
        &self,
        room: &str,
        peer_id: &str,
        identity: &str,
        node: &str,
        now: i64,
    ) -> Result<u64> {
        let rank: i64 = sqlx::query_scalar(
            "INSERT INTO signal_members (room, peer_id, identity, node, joined_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING rank",
        )
        .bind(room)
        .bind(peer_id)
        .bind(identity)
        .bind(node)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(rank as u64)
    }

    /// Removes a member; false if it was not there.
    pub async fn remove_member(&self, room: &str, peer_id: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM signal_members WHERE room = $1 AND peer_id = $2")
                .bind(room)
                .bind(peer_id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    /// A room's members, by rank.
    pub async fn members(&self, room: &str) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT peer_id, identity, rank FROM signal_members WHERE room = $1 ORDER BY rank",
        )
        .bind(room)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Member {
                    peer_id: r.try_get("peer_id")?,
                    identity: r.try_get("identity")?,
                    rank: r.try_get::<i64, _>("rank")? as u64,
                })
            })
            .collect()
    }

    /// Rooms whose key starts with `prefix`, with member counts, by key.
    pub async fn rooms(&self, prefix: &str) -> Result<Vec<(String, usize)>> {
        let rows = sqlx::query(
            "SELECT room, COUNT(*) AS n FROM signal_members WHERE starts_with(room, $1) \
             GROUP BY room ORDER BY room",
        )
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("room")?, r.try_get::<i64, _>("n")? as usize)))
            .collect()
    }

    /// Records that `node` is alive at `now`.
    pub async fn heartbeat(&self, node: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO signal_nodes (node, seen_at) VALUES ($1, $2) \
             ON CONFLICT (node) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(node)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes the members of nodes other than `node` last seen before `cutoff` (and of nodes
    /// with no liveness row at all whose members joined before it), then those nodes' rows;
    /// returns the members removed. When several nodes do this at once, each member is returned
    /// to exactly one of them.
    pub async fn remove_silent_nodes(&self, node: &str, cutoff: i64) -> Result<Vec<LostMember>> {
        let rows = sqlx::query(
            "DELETE FROM signal_members m WHERE m.node <> $2 AND ( \
               m.node IN (SELECT node FROM signal_nodes WHERE seen_at < $1) \
               OR (m.joined_at < $1 AND NOT EXISTS \
                   (SELECT 1 FROM signal_nodes n WHERE n.node = m.node))) \
             RETURNING m.room, m.peer_id",
        )
        .bind(cutoff)
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        sqlx::query("DELETE FROM signal_nodes WHERE seen_at < $1 AND node <> $2")
            .bind(cutoff)
            .bind(node)
            .execute(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LostMember {
                    room: r.try_get("room")?,
                    peer_id: r.try_get("peer_id")?,
                })
            })
            .collect()
    }

    /// Removes `node`'s members and liveness row; returns how many members.
    pub async fn forget_node(&self, node: &str) -> Result<u64> {
        let n = sqlx::query("DELETE FROM signal_members WHERE node = $1")
            .bind(node)
            .execute(&self.pool)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM signal_nodes WHERE node = $1")
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(n)
    }
}

/// A connection listening on [`CHANNEL`] (it reconnects by itself after a failure; a
/// notification sent meanwhile is lost).
pub struct Listener {
    inner: PgListener,
}

impl Listener {
    /// The next notification's payload.
    pub async fn recv(&mut self) -> Result<String> {
        Ok(self.inner.recv().await?.payload().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs a PostgreSQL server; `scripts/test` starts one and runs the ignored tests.
    #[tokio::test]
    #[ignore = "needs TURNPIKE_TEST_POSTGRES_URL (scripts/test starts a server)"]
    async fn signal_tables_on_postgres() {
        let url = std::env::var("TURNPIKE_TEST_POSTGRES_URL")
            .expect("TURNPIKE_TEST_POSTGRES_URL must name a PostgreSQL server");
        // Applies the migrations.
        crate::AnyStore::connect(&url).await.unwrap();
        let db = SignalDb::connect(&url).await.unwrap();
        let tag = format!("{:016x}", rand::random::<u64>());
        let (room, node, dead) = (format!("t_{tag}/r"), format!("n_{tag}"), format!("d_{tag}"));
        // Long ago: the cutoffs below touch no row a running node wrote.
        const NOW: i64 = 1_000;

        // Membership: ranks in join order, counts by prefix, removal once.
        let r1 = db
            .add_member(&room, "p1", "alice", &node, NOW)
            .await
            .unwrap();
        let r2 = db.add_member(&room, "p2", "bob", &node, NOW).await.unwrap();
        assert!(r2 > r1);
        let m = db.members(&room).await.unwrap();
        assert_eq!(
            m.iter().map(|m| m.identity.as_str()).collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        assert_eq!(
            db.rooms(&format!("t_{tag}/")).await.unwrap(),
            vec![(room.clone(), 2)]
        );
        assert!(db.remove_member(&room, "p2").await.unwrap());
        assert!(!db.remove_member(&room, "p2").await.unwrap());

        // Large payloads: stored, read back, expired.
        let id = db
            .put_payload("x".repeat(9000).as_str(), NOW)
            .await
            .unwrap();
        assert_eq!(db.payload(id).await.unwrap().map(|b| b.len()), Some(9000));
        assert!(db.delete_payloads_before(NOW + 1).await.unwrap() >= 1);
        assert_eq!(db.payload(id).await.unwrap(), None);

        // NOTIFY reaches a listener.
        let mut l = db.listen().await.unwrap();
        db.notify(&format!("hello {tag}")).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                let p = l.recv().await.unwrap();
                if p.ends_with(&tag) {
                    return p;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(got, format!("hello {tag}"));

        // Liveness: a node silent since before the cutoff loses its members, once.
        db.heartbeat(&node, NOW + 100).await.unwrap();
        db.heartbeat(&dead, NOW).await.unwrap();
        db.add_member(&room, "p3", "carol", &dead, NOW)
            .await
            .unwrap();
        let lost = db.remove_silent_nodes(&node, NOW + 50).await.unwrap();
        assert!(lost.contains(&LostMember {
            room: room.clone(),
            peer_id: "p3".into()
        }));
        assert!(!lost.iter().any(|l| l.peer_id == "p1"));
        assert!(db
            .remove_silent_nodes(&node, NOW + 50)
            .await
            .unwrap()
            .iter()
            .all(|l| l.room != room));
        // A stopping node forgets its own members.
        assert_eq!(db.forget_node(&node).await.unwrap(), 1);
        assert!(db.members(&room).await.unwrap().is_empty());
    }
}
