//! The SQLite database file: created private (0600), its identity recorded when opened, and
//! checked before each write (see [`DbFile::still_there`]).

/// The SQLite file as opened: its path and identity (device and inode). A write through a pool
/// whose file was deleted (or renamed over) goes to an unlinked inode and is lost at the next
/// start, so writes are refused once the path no longer names the same file.
pub(super) struct DbFile {
    path: std::path::PathBuf,
    id: (u64, u64),
    /// Set (and logged) once the file is gone; never cleared: restart after restoring it.
    lost: std::sync::atomic::AtomicBool,
}

impl DbFile {
    /// Creates the file with mode 0600 if missing (before SQLite does, with 0644 less the
    /// umask), makes an existing one and its `-wal` and `-shm` private, and records its
    /// identity. SQLite gives new `-wal` and `-shm` files the database file's mode.
    pub(super) fn prepare(path: &std::path::Path) -> std::io::Result<Self> {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        match o.open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let path = std::fs::canonicalize(path)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            make_private(std::path::Path::new(&p))?;
        }
        let id = file_id(&std::fs::metadata(&path)?);
        Ok(Self {
            path,
            id,
            lost: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// One `stat`: does the path still name the file opened?
    pub(super) fn still_there(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.lost.load(Ordering::Relaxed) {
            return false;
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| file_id(&m) == self.id) {
            return true;
        }
        if !self.lost.swap(true, Ordering::Relaxed) {
            tracing::error!(
                path = %self.path.display(),
                "the SQLite database file was removed or replaced while running: writes are \
                 refused until the server is restarted after restoring it (changes accepted \
                 until now are in the old file, if it is still open elsewhere, or lost)"
            );
        }
        false
    }
}

#[cfg(unix)]
fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// Removes group and other permissions from `path`, if it exists.
#[cfg(unix)]
fn make_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn make_private(_: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}
