//! Finding the `.t` files of a suite and running them, one or several at a time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use anyhow::{bail, Context};

use crate::replay::FileResult;

/// A file to run and the name reports use for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuiteFile {
    pub path: PathBuf,
    pub name: String,
}

/// Every `*.t` under each path (a file is taken as is), sorted within a folder; a
/// folder's files are named relative to that folder.
pub fn collect(paths: &[PathBuf]) -> anyhow::Result<Vec<SuiteFile>> {
    let mut files = Vec::new();
    for root in paths {
        if root.is_dir() {
            let mut found = Vec::new();
            walk(root, &mut found)?;
            found.sort();
            for path in found {
                let name = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                files.push(SuiteFile { path, name });
            }
        } else if root.is_file() {
            files.push(SuiteFile {
                path: root.clone(),
                name: root.display().to_string(),
            });
        } else {
            bail!("{}: no such file or folder", root.display());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, found)?;
        } else if path.extension().is_some_and(|e| e == "t") {
            found.push(path);
        }
    }
    Ok(())
}

/// Replays one file: its name for reports and its text.
pub type ReplayFn<'a> = dyn Fn(&str, &str) -> FileResult + Sync + 'a;

/// Runs `replay` over `files` on `jobs` worker threads. `report` is called in the main
/// thread with each result, in the order of `files`, as soon as it and all before it
/// are done.
pub fn run(
    files: &[SuiteFile],
    replay: &ReplayFn<'_>,
    jobs: usize,
    mut report: impl FnMut(&FileResult),
) -> Vec<FileResult> {
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, FileResult)>();
    let mut done: Vec<Option<FileResult>> = vec![None; files.len()];
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1).min(files.len().max(1)) {
            let tx = tx.clone();
            let next = &next;
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(file) = files.get(i) else { break };
                if tx.send((i, run_one(file, replay))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut printed = 0;
        for (i, result) in rx {
            done[i] = Some(result);
            while let Some(Some(r)) = done.get(printed) {
                report(r);
                printed += 1;
            }
        }
    });
    done.into_iter().flatten().collect()
}

fn run_one(file: &SuiteFile, replay: &ReplayFn<'_>) -> FileResult {
    let text = match std::fs::read_to_string(&file.path) {
        Ok(t) => t,
        Err(e) => {
            return FileResult {
                name: file.name.clone(),
                harness_error: Some(format!("cannot read {}: {e}", file.path.display())),
                ..FileResult::default()
            }
        }
    };
    // A harness bug in one file must not take the namespaces of others down with it;
    // the guards inside clean up while unwinding.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| replay(&file.name, &text)))
        .unwrap_or_else(|panic| FileResult {
            name: file.name.clone(),
            harness_error: Some(format!("harness panicked: {}", panic_text(&panic))),
            ..FileResult::default()
        })
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
