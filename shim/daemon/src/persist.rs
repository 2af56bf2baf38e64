//! The state directory: one JSON file per namespace, `netns-<cookie>.json`, written
//! atomically (temp file, then rename) after every change and restored at start.
//!
//! A change is written by a background thread ([`StateStore::save_later`]) from a
//! snapshot taken under the namespace's lock, so that a commit's reply does not wait for
//! a large ruleset to be serialised. Snapshots of one namespace queued behind each other
//! are coalesced: only the newest is written. [`StateStore::flush`] waits for the queue
//! (at shutdown, and for tests).
//!
//! Each file carries the boot id. Namespace cookies only mean something within one boot,
//! and after a reboot the kernel's own rulesets are empty too, so files from another boot
//! are discarded rather than restored.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

const FORMAT: u32 = 1;
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
/// The writer thread's nice value.
const WRITER_NICE: libc::c_int = 10;

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
    /// The writer thread's queue, started by the first [`StateStore::save_later`].
    writer: Mutex<Option<Sender<WriteJob>>>,
}

/// A namespace's state, taken under its lock and serialised by the writer straight
/// into the file (a large ruleset's JSON is megabytes: it is not built in memory).
pub type Snapshot = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

enum WriteJob {
    Save {
        cookie: u64,
        inode: u64,
        genid: u32,
        snapshot: Snapshot,
    },
    Flush(Sender<()>),
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
            writer: Mutex::new(None),
        })
    }

    /// Queues a namespace's state to be written by the writer thread.
    pub fn save_later(&self, cookie: u64, inode: u64, genid: u32, snapshot: Snapshot) {
        let job = WriteJob::Save {
            cookie,
            inode,
            genid,
            snapshot,
        };
        if let Err(unsent) = self.queue(job) {
            // No writer thread: write here.
            if let WriteJob::Save { snapshot, .. } = unsent {
                self.save_logged(cookie, inode, genid, snapshot);
            }
        }
    }

    /// Returns once every state queued before has been written.
    pub fn flush(&self) {
        let (done, wait) = channel();
        if self.queue(WriteJob::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    fn queue(&self, job: WriteJob) -> Result<(), WriteJob> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if writer.is_none() {
            let (tx, rx) = channel();
            let store = StateStore {
                dir: self.dir.clone(),
                boot_id: self.boot_id.clone(),
                writer: Mutex::new(None),
            };
            let spawned = std::thread::Builder::new()
                .name("nftshim-state".into())
                .spawn(move || store.write_queued(rx));
            if spawned.is_err() {
                return Err(job);
            }
            *writer = Some(tx);
        }
        let Some(w) = writer.as_ref() else {
            return Err(job);
        };
        w.send(job).map_err(|e| {
            // The writer is gone: start a new one next time.
            *writer = None;
            e.0
        })
    }

    /// The writer thread: waits for a job, takes whatever else is queued, writes the
    /// newest snapshot of each namespace, then answers the flushes among them.
    fn write_queued(&self, jobs: Receiver<WriteJob>) {
        // Writing 10,000 rules' JSON takes milliseconds of CPU: at a lower priority, so
        // that it yields the CPU to the next commit rather than slowing it down (on a
        // two-core machine it would otherwise share a core with the commit's work).
        // SAFETY: setpriority(2) of this thread (PRIO_PROCESS with a thread id).
        unsafe {
            libc::setpriority(
                libc::PRIO_PROCESS,
                libc::gettid() as libc::id_t,
                WRITER_NICE,
            );
        }
        while let Ok(first) = jobs.recv() {
            let mut newest: Vec<(u64, u64, u32, Snapshot)> = Vec::new();
            let mut flushed = Vec::new();
            for job in std::iter::once(first).chain(jobs.try_iter()) {
                match job {
                    WriteJob::Save {
                        cookie,
                        inode,
                        genid,
                        snapshot,
                    } => {
                        newest.retain(|(c, ..)| *c != cookie);
                        newest.push((cookie, inode, genid, snapshot));
                    }
                    WriteJob::Flush(done) => flushed.push(done),
                }
            }
            for (cookie, inode, genid, snapshot) in newest {
                self.save_logged(cookie, inode, genid, snapshot);
            }
            for done in flushed {
                let _ = done.send(());
            }
        }
    }

    fn save_logged(&self, cookie: u64, inode: u64, genid: u32, snapshot: Snapshot) {
        match self.save_with(cookie, inode, genid, snapshot) {
            Ok(()) => tracing::debug!(cookie, genid, "state saved"),
            Err(e) => tracing::error!(cookie, error = %e, "could not save namespace state"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path_for(&self, cookie: u64) -> PathBuf {
        self.dir.join(format!("netns-{cookie}.json"))
    }

    /// Writes a namespace's state: temp file, then rename, so that a crash of the daemon
    /// leaves either the old file or the new one, never a torn one. No fsync: it would
    /// only matter if the machine went down, and after a reboot the state is discarded
    /// anyway (another boot id), as the kernel's rulesets are. It would cost a commit
    /// milliseconds for nothing.
    pub fn save<T: Serialize + ?Sized>(
        &self,
        cookie: u64,
        inode: u64,
        genid: u32,
        state: &T,
    ) -> io::Result<()> {
        self.save_with(cookie, inode, genid, |w: &mut dyn Write| {
            serde_json::to_writer(w, state).map_err(io::Error::other)
        })
    }

    /// [`StateStore::save`] with the state written by `write_state`: a
    /// [`PersistedNamespace`] whose `state` is what it writes.
    fn save_with(
        &self,
        cookie: u64,
        inode: u64,
        genid: u32,
        write_state: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let path = self.path_for(cookie);
        let tmp = self.dir.join(format!(".netns-{cookie}.json.tmp"));
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut w = io::BufWriter::with_capacity(1 << 16, f);
        let boot_id = serde_json::to_string(&self.boot_id).map_err(io::Error::other)?;
        write!(
            w,
            "{{\"format\":{FORMAT},\"boot_id\":{boot_id},\"cookie\":{cookie},\"inode\":{inode},\"genid\":{genid},\"state\":"
        )?;
        write_state(&mut w)?;
        w.write_all(b"}")?;
        w.into_inner().map_err(|e| e.into_error())?;
        fs::rename(&tmp, &path)
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
            .save(7, 4026531840, 3, &json!({"tables": ["t"]}))
            .unwrap();
        store.save(9, 4026531841, 2, &json!({})).unwrap();
        // Rewriting replaces, and leaves no temp file behind.
        store
            .save(7, 4026531840, 4, &json!({"tables": ["t", "u"]}))
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
