//! Files of the PKI and the admission state: private keys written 0600,
//! every file replaced atomically, JSON records read and written under an
//! exclusive lock so the coordinator and the admin commands never lose
//! each other's updates.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::PkiError;

fn io_err(path: &Path, e: impl std::fmt::Display) -> PkiError {
    PkiError::File {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Writes `bytes` to `path` atomically with `mode` (a temporary file in the
/// same directory, then a rename).
fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    // The mode of an existing temporary file is not changed by open().
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// Writes a private key or other secret: readable by the owner only (0600).
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_with_mode(path, bytes, 0o600)
}

/// Writes a certificate or other public file (0644).
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_with_mode(path, bytes, 0o644)
}

/// Reads a whole text file, naming it on failure.
pub fn read_text(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|e| io_err(path, e))
}

/// Refuses a private key that others can read: a key left 0644 on a shared
/// board is a key anyone there holds.
pub fn check_private(path: &Path) -> Result<(), PkiError> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(io_err(
            path,
            format!("private key has mode {mode:o}; make it 0600 (chmod 600)"),
        ));
    }
    Ok(())
}

/// A JSON list of records in a state directory, updated under an
/// exclusive lock on `DIR/.lock`.
#[derive(Debug, Clone)]
pub struct JsonRecords {
    path: PathBuf,
    lock: PathBuf,
}

impl JsonRecords {
    /// The records file `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        Self {
            path: dir.join(name),
            lock: dir.join(".lock"),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn locked(&self) -> Result<File, PkiError> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&self.lock)
            .map_err(|e| io_err(&self.lock, e))?;
        f.lock().map_err(|e| io_err(&self.lock, e))?;
        Ok(f)
    }

    fn read_unlocked<T: DeserializeOwned>(&self) -> Result<Vec<T>, PkiError> {
        match std::fs::read(&self.path) {
            Ok(bytes) if bytes.is_empty() => Ok(Vec::new()),
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| io_err(&self.path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_err(&self.path, e)),
        }
    }

    /// All records (none when the file does not exist yet).
    pub fn read<T: DeserializeOwned>(&self) -> Result<Vec<T>, PkiError> {
        let _guard = self.locked()?;
        self.read_unlocked()
    }

    /// Reads, lets `f` change the records and returns its result, then
    /// writes them back (0600: they hold hashes of secrets), all under the
    /// lock.
    pub fn update<T, R>(
        &self,
        f: impl FnOnce(&mut Vec<T>) -> Result<R, PkiError>,
    ) -> Result<R, PkiError>
    where
        T: DeserializeOwned + Serialize,
    {
        let _guard = self.locked()?;
        let mut records = self.read_unlocked()?;
        let out = f(&mut records)?;
        let json = serde_json::to_vec_pretty(&records).map_err(|e| io_err(&self.path, e))?;
        write_secret(&self.path, &json)?;
        Ok(out)
    }

    /// The file's modification stamp, to reload only on change.
    pub fn stamp(&self) -> Option<Stamp> {
        let m = std::fs::metadata(&self.path).ok()?;
        Some((m.modified().ok()?, m.len()))
    }
}

/// A records file kept in memory and re-read when it changes on disk (the
/// admin commands write it while the coordinator runs). Reading costs one
/// `stat` when nothing changed.
#[derive(Debug)]
pub struct Watched<T> {
    records: JsonRecords,
    cache: std::sync::Mutex<(Option<Stamp>, std::sync::Arc<Vec<T>>)>,
}

/// A file's modification time and length.
pub type Stamp = (std::time::SystemTime, u64);

impl<T: DeserializeOwned> Watched<T> {
    /// Watches `records`.
    pub fn new(records: JsonRecords) -> Self {
        Self {
            records,
            cache: std::sync::Mutex::new((None, std::sync::Arc::new(Vec::new()))),
        }
    }

    /// The records as on disk now; an unreadable file is an error (callers
    /// fail closed).
    pub fn get(&self) -> Result<std::sync::Arc<Vec<T>>, PkiError> {
        let stamp = self.records.stamp();
        let mut cache = self.cache.lock().expect("records lock");
        if stamp.is_none() || cache.0 != stamp {
            let fresh = std::sync::Arc::new(self.records.read::<T>()?);
            *cache = (stamp, fresh);
        }
        Ok(cache.1.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_owner_only_and_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("a.key");
        write_secret(&key, b"secret").unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        check_private(&key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_private(&key).is_err());

        let rec = JsonRecords::new(dir.path(), "r.json");
        assert!(rec.read::<u32>().unwrap().is_empty());
        rec.update(|v: &mut Vec<u32>| {
            v.push(7);
            Ok(())
        })
        .unwrap();
        let n = rec
            .update(|v: &mut Vec<u32>| {
                v.push(8);
                Ok(v.len())
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(rec.read::<u32>().unwrap(), vec![7, 8]);
        std::fs::write(rec.path(), "not json").unwrap();
        assert!(rec.read::<u32>().is_err(), "a corrupt file is an error");
    }
}
