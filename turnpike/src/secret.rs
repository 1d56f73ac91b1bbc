//! The generated shared secret used when no credentials are configured: created once in the data
//! directory (mode 0600), reused on later starts.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
use rand::RngCore;

/// Returns the secret and whether it was generated just now.
pub(crate) fn load_or_create(dir: &Path) -> Result<(String, bool)> {
    let path = dir.join("shared-secret");
    if path.exists() {
        let s = fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (fix its permissions or key `data_dir`)",
                path.display()
            )
        })?;
        let s = s.trim().to_string();
        if s.len() >= 8 {
            return Ok((s, false));
        }
    }
    crate::instance::ensure_data_dir(dir)?;
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {} (set key `data_dir`)", path.display()))?;
    f.write_all(s.as_bytes())?;
    Ok((s, true))
}

/// A random 32-byte key (nonce MACs).
pub(crate) fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut k);
    k
}
