//! The operator-state file (`admin_state_file`, issue 19 item 1): the admin state of
//! every server an operator touched, so that a `disable` or `maintenance on` survives a
//! proxy restart.
//!
//! JSON (`{"version":1,"servers":[...]}`, one [`AdminRecord`] per server), written
//! atomically: a temporary file in the same directory (mode 0600), fsync, rename over the
//! old file, fsync of the directory. A reader sees the old or the new file, never a part.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::AdminRecord;

/// Version of the file layout.
pub const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct File {
    version: u32,
    servers: Vec<AdminRecord>,
}

/// Why the state file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// I/O on the file or its directory.
    #[error("admin state file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a state file of this version.
    #[error("admin state file {path}: {message} (fix or remove it; the proxy does not guess operator states)")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads the file; a missing file is an empty state.
pub fn load(path: &Path) -> Result<Vec<AdminRecord>, StateFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateFileError::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let f: File = serde_json::from_str(&text).map_err(|e| StateFileError::Invalid {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    if f.version != VERSION {
        return Err(StateFileError::Invalid {
            path: path.display().to_string(),
            message: format!("version {} (this proxy writes {VERSION})", f.version),
        });
    }
    Ok(f.servers)
}

/// Writes the file atomically (temporary file, fsync, rename, directory fsync); the
/// directory is created when missing.
pub fn save(path: &Path, records: &[AdminRecord]) -> Result<(), StateFileError> {
    let io = |source| StateFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let body = serde_json::to_vec_pretty(&File {
        version: VERSION,
        servers: records.to_vec(),
    })
    .map_err(|e| io(std::io::Error::other(e)))?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(&body).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::AdminState;

    #[test]
    fn round_trip_missing_and_corrupt_files() {
        let dir = std::env::temp_dir().join(format!("proxy-pe-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/admin-state.json");
        assert_eq!(load(&path).expect("missing is empty"), Vec::new());
        let recs = vec![AdminRecord {
            app: "A".into(),
            server: "IP1".into(),
            state: AdminState::Draining,
            by: "uid 0 (root)".into(),
            since_ms: 5,
            drain_deadline_ms: Some(9),
        }];
        save(&path, &recs).expect("save");
        assert_eq!(load(&path).expect("load"), recs);
        assert!(!dir.join("sub/admin-state.json.tmp").exists());
        save(&path, &[]).expect("save empty");
        assert_eq!(load(&path).expect("load"), Vec::new());
        std::fs::write(&path, "{\"version\":1,\"servers\":[{\"app\":").expect("write");
        assert!(matches!(load(&path), Err(StateFileError::Invalid { .. })));
        std::fs::write(&path, "{\"version\":7,\"servers\":[]}").expect("write");
        assert!(matches!(load(&path), Err(StateFileError::Invalid { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
