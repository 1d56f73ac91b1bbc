//! The SQL backends: [`SqliteStore`] and [`PgStore`] implement [`crate::Store`] with the same
//! query text ([`queries`]) and the same row mappers ([`rows`], and `sqlx::FromRow` on the model
//! types), each on its own pool type.

mod billing;
mod db_file;
mod errors;
mod listen;
mod nodes;
mod postgres;
mod queries;
mod reads;
mod rows;
mod sqlite;
mod usage;

pub use listen::ChangeListener;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
