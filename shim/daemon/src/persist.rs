//! The state directory: one JSON file per namespace, `netns-<cookie>.json`, written
//! atomically after every change and restored at start.
//!
//! Each file carries the boot id. Namespace cookies only mean something within one boot,
//! and after a reboot the kernel's own rulesets are empty too, so files from another boot
//! are discarded rather than restored.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const FORMAT: u32 = 1;
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PersistedNamespace {
    pub format: u32,
    pub boot_id: String,
    pub cookie: u64,
    pub inode: u64,
    pub genid: u32,
    pub state: serde_json::Value,
}

#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    boot_id: String,
}

/// What [`StateStore::restore`] found.
#[derive(Debug, Default)]
pub struct Restored {
    pub namespaces: Vec<PersistedNamespace>,
    /// Files from another boot, removed.
    pub discarded: Vec<PathBuf>,
    /// Files that could not be read or parsed, left in place for a human.
    pub unreadable: Vec<(PathBuf, String)>,
}

pub fn current_boot_id() -> io::Result<String> {
    Ok(fs::read_to_string(BOOT_ID_PATH)?.trim().to_string())
}

impl StateStore {
    pub fn open(dir: &Path) -> io::Result<Self> {
        Self::with_boot_id(dir, current_boot_id()?)
    }

    pub fn with_boot_id(dir: &Path, boot_id: String) -> io::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        Ok(StateStore {
            dir: dir.to_path_buf(),
            boot_id,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_for(&self, cookie: u64) -> PathBuf {
        self.dir.join(format!("netns-{cookie}.json"))
    }

    /// Writes a namespace's state: temp file, fsync, rename, fsync of the directory, so
    /// a crash leaves either the old file or the new one, never a torn one.
    pub fn save(
        &self,
        cookie: u64,
        inode: u64,
        genid: u32,
        state: serde_json::Value,
    ) -> io::Result<()> {
        let record = PersistedNamespace {
            format: FORMAT,
            boot_id: self.boot_id.clone(),
            cookie,
            inode,
            genid,
            state,
        };
        let bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
        let path = self.path_for(cookie);
        let tmp = self.dir.join(format!(".netns-{cookie}.json.tmp"));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &path)?;
        fs::File::open(&self.dir)?.sync_all()
    }

    /// Reads every namespace file of this boot; removes those of other boots and stale
    /// temp files.
    pub fn restore(&self) -> io::Result<Restored> {
        let mut out = Restored::default();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if name.starts_with(".netns-") && name.ends_with(".json.tmp") {
                // Left by a crash between write and rename: the previous file is intact.
                let _ = fs::remove_file(&path);
                continue;
            }
            if !(name.starts_with("netns-") && name.ends_with(".json")) {
                continue;
            }
            let parsed = fs::read(&path).map_err(|e| e.to_string()).and_then(|b| {
                serde_json::from_slice::<PersistedNamespace>(&b).map_err(|e| e.to_string())
            });
            match parsed {
                Err(e) => out.unreadable.push((path, e)),
                Ok(ns) if ns.format != FORMAT => out
                    .unreadable
                    .push((path, format!("unknown format {}", ns.format))),
                Ok(ns) if ns.boot_id != self.boot_id => {
                    fs::remove_file(&path)?;
                    out.discarded.push(path);
                }
                Ok(ns) if path != self.path_for(ns.cookie) => out.unreadable.push((
                    path,
                    format!("file name does not match cookie {}", ns.cookie),
                )),
                Ok(ns) => out.namespaces.push(ns),
            }
        }
        out.namespaces.sort_by_key(|n| n.cookie);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn saved_state_comes_back_and_other_boots_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::with_boot_id(dir.path(), "boot-a".into()).unwrap();
        store
            .save(7, 4026531840, 3, json!({"tables": ["t"]}))
            .unwrap();
        store.save(9, 4026531841, 2, json!({})).unwrap();
        // Rewriting replaces, and leaves no temp file behind.
        store
            .save(7, 4026531840, 4, json!({"tables": ["t", "u"]}))
            .unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");

        let r = store.restore().unwrap();
        assert_eq!(r.namespaces.len(), 2);
        assert_eq!(r.namespaces[0].cookie, 7);
        assert_eq!(r.namespaces[0].genid, 4);
        assert_eq!(r.namespaces[0].state, json!({"tables": ["t", "u"]}));

        let after_reboot = StateStore::with_boot_id(dir.path(), "boot-b".into()).unwrap();
        let r = after_reboot.restore().unwrap();
        assert!(r.namespaces.is_empty());
        assert_eq!(r.discarded.len(), 2);
        assert!(!store.path_for(7).exists());
    }

    #[test]
    fn garbage_is_reported_not_restored_and_temp_files_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::with_boot_id(dir.path(), "b".into()).unwrap();
        fs::write(store.path_for(1), b"{not json").unwrap();
        fs::write(dir.path().join(".netns-2.json.tmp"), b"half").unwrap();
        fs::write(dir.path().join("unrelated.txt"), b"x").unwrap();
        let r = store.restore().unwrap();
        assert!(r.namespaces.is_empty());
        assert_eq!(r.unreadable.len(), 1);
        assert!(!dir.path().join(".netns-2.json.tmp").exists());
        assert!(dir.path().join("unrelated.txt").exists());
    }

    #[test]
    fn the_real_boot_id_is_readable() {
        let id = current_boot_id().unwrap();
        assert_eq!(id.len(), 36, "{id}");
    }
}
