//! Shared by the integration tests: the fake daemon, throwaway network namespaces, and
//! running commands under the preload library with a deadline.

#![allow(dead_code)]

pub mod fake_daemon;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// target/<profile>/, found from this test binary (target/<profile>/deps/<test>).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// The library cargo built for this test run: `cargo test` builds it in deps/ (as the
/// cdylib beside the rlib the tests depend on) but copies it up only on `cargo build`,
/// so take the newer of the two.
pub fn preload_lib() -> PathBuf {
    let name = "libnftshim_preload.so";
    let candidates = [
        target_dir().join("deps").join(name),
        target_dir().join(name),
    ];
    let newest = candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p.clone())))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p);
    newest.unwrap_or_else(|| panic!("{name} missing under {}", target_dir().display()))
}

/// The probe program (examples/nl_probe.rs), which cargo test builds too.
pub fn probe() -> PathBuf {
    let p = target_dir().join("examples").join("nl_probe");
    assert!(p.exists(), "{} missing", p.display());
    p
}

/// A network namespace of our own, deleted on drop (even when the test fails).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("nftshim-test-{}-{:x}", std::process::id(), nanos);
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add");
        assert!(st.success(), "ip netns add {name} failed");
        Netns { name }
    }

    /// Inode of the namespace, as the daemon sees it through the fd in Hello.
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", self.name))
            .expect("netns file")
            .ino()
    }

    /// `ip netns exec NAME env VARS... PROGRAM ARGS...`
    pub fn command(&self, env: &[(&str, &str)], program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, "env"]);
        for (k, v) in env {
            c.arg(format!("{k}={v}"));
        }
        c.arg(program).args(args);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `cmd`, killing it and failing the test if it takes longer than `limit`.
pub fn run(mut cmd: Command, limit: Duration) -> Output {
    use std::io::Read;
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A test that has just copied an executable can meet ETXTBSY: a child forked by a
    // parallel test inherits the copy's write descriptor until that child execs.
    let mut attempts = 0;
    let mut child = loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other.expect("spawn"),
        }
    };
    // Drain both pipes while waiting, so a chatty child cannot block on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{desc} hung (killed after {limit:?}); stdout: {} stderr: {}",
            text(&stdout),
            text(&stderr)
        ),
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
