//! `nftshim status`: one `Status` exchange with the daemon, shown for people.

use std::fmt::Write as _;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use nftshim_ipc::{Frame, Op, StatusReport};

pub fn run(socket: &Path, json: bool) -> Result<ExitCode> {
    let answer = ask(socket)?;
    if json {
        println!("{}", String::from_utf8_lossy(&answer));
        return Ok(ExitCode::SUCCESS);
    }
    let report: StatusReport = serde_json::from_slice(&answer)
        .context("the daemon's status is not the JSON nftshim expects")?;
    print!("{}", render(&report, socket, own_netns_inode()));
    if !report.enforcing {
        eprintln!("{}", warning(&report));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn warning(report: &StatusReport) -> String {
    format!(
        "WARNING: nftshimd's data plane '{}' does NOT enforce rules: rulesets are stored and listed, but no packet is filtered",
        report.dataplane
    )
}

/// The report as text. `own` is the inode of our network namespace, marked in the list.
pub fn render(report: &StatusReport, socket: &Path, own: Option<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "nftshimd at {}", socket.display());
    let enforcing = if report.enforcing {
        "enforcing"
    } else {
        "NOT enforcing"
    };
    let _ = writeln!(s, "data plane: {} ({enforcing})", report.dataplane);
    let _ = writeln!(s, "namespaces: {}", report.namespaces.len());
    if report.namespaces.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "  {:<24} {:>12} {:>10} {:>7} {:>8} {:>8} {:>6} {:>8} {:>11}",
        "NAMESPACE",
        "INODE",
        "GENERATION",
        "TABLES",
        "SOCKETS",
        "PROGRAMS",
        "LOADS",
        "PATCHES",
        "MAP WRITES"
    );
    let opt = |v: Option<u32>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    for ns in &report.namespaces {
        let mut name = ns.name.clone().unwrap_or_else(|| "-".into());
        if Some(ns.inode) == own {
            name.push_str(" (this one)");
        }
        // Data plane: programs attached, loaded afresh, rewritten in place, and the
        // map entries written so far.
        let dp = |f: fn(&nftshim_ipc::DataplaneStatus) -> u64| {
            ns.dataplane
                .as_ref()
                .map_or_else(|| "-".to_string(), |d| f(d).to_string())
        };
        let _ = writeln!(
            s,
            "  {:<24} {:>12} {:>10} {:>7} {:>8} {:>8} {:>6} {:>8} {:>11}",
            name,
            ns.inode,
            ns.generation,
            opt(ns.tables),
            opt(ns.sockets),
            dp(|d| d.programs),
            dp(|d| d.loads),
            dp(|d| d.patches),
            dp(|d| d.map_writes)
        );
    }
    s
}

fn own_netns_inode() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net").ok().map(|m| m.ino())
}

fn unreachable(socket: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot reach nftshimd at {}: {}",
        socket.display(),
        describe(&e)
    )
}

/// The OS's text for an error, without Rust's " (os error N)" suffix.
fn describe(e: &std::io::Error) -> String {
    let full = e.to_string();
    match full.rfind(" (os error ") {
        Some(i) if e.raw_os_error().is_some() => full[..i].to_string(),
        _ => full,
    }
}

/// Sends `Status` on a fresh connection and returns the `Done` payload.
fn ask(socket: &Path) -> Result<Vec<u8>> {
    let conn = connect(socket).map_err(|e| unreachable(socket, e))?;
    let fd = conn.as_raw_fd();
    let rec = Frame {
        op: Op::Status,
        status: 0,
    }
    .encode(&[]);
    // SAFETY: plain socket calls on our own fd and buffers.
    unsafe {
        if libc::send(fd, rec.as_ptr().cast(), rec.len(), libc::MSG_NOSIGNAL) < 0 {
            return Err(unreachable(socket, std::io::Error::last_os_error()));
        }
        // Peek at the size first: the JSON grows with the number of namespaces.
        let mut probe = [0u8; 1];
        let size = libc::recv(
            fd,
            probe.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_TRUNC,
        );
        if size < 0 {
            return Err(unreachable(socket, std::io::Error::last_os_error()));
        }
        if size == 0 {
            bail!(
                "nftshimd at {} closed the connection without answering",
                socket.display()
            );
        }
        let mut buf = vec![0u8; size as usize];
        let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
        if n < 0 {
            return Err(unreachable(socket, std::io::Error::last_os_error()));
        }
        buf.truncate(n as usize);
        match Frame::decode(&buf) {
            Some((
                Frame {
                    op: Op::Done,
                    status: 0,
                },
                payload,
            )) => Ok(payload.to_vec()),
            Some((
                Frame {
                    op: Op::Done,
                    status,
                },
                _,
            )) => {
                bail!(
                    "nftshimd refused the status request: {}",
                    describe(&std::io::Error::from_raw_os_error((-status) as i32))
                )
            }
            _ => bail!("nftshimd sent an answer nftshim does not understand"),
        }
    }
}

fn connect(path: &Path) -> std::io::Result<OwnedFd> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: socket calls with a sockaddr_un we fill within its bounds.
    unsafe {
        let mut addr: libc::sockaddr_un = zeroed();
        if bytes.len() >= addr.sun_path.len() {
            return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let len = (size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
        if libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nftshim_ipc::NamespaceStatus;

    #[test]
    fn render_lists_namespaces_and_marks_ours() {
        let report = StatusReport {
            dataplane: "none".into(),
            enforcing: false,
            namespaces: vec![
                NamespaceStatus {
                    inode: 11,
                    name: Some("blue".into()),
                    generation: 4,
                    tables: Some(2),
                    sockets: None,
                    cookie: None,
                    dataplane: Some(nftshim_ipc::DataplaneStatus {
                        programs: 2,
                        loads: 3,
                        patches: 5,
                        map_writes: 7,
                    }),
                },
                NamespaceStatus {
                    inode: 12,
                    name: None,
                    generation: 1,
                    tables: None,
                    sockets: Some(1),
                    cookie: None,
                    dataplane: None,
                },
            ],
            pid: None,
            version: None,
        };
        let text = render(&report, Path::new("/run/x.sock"), Some(12));
        assert!(text.contains("data plane: none (NOT enforcing)"), "{text}");
        assert!(text.contains("namespaces: 2"), "{text}");
        let blue = text.lines().find(|l| l.contains("blue")).unwrap();
        assert_eq!(
            blue.split_whitespace().collect::<Vec<_>>(),
            ["blue", "11", "4", "2", "-", "2", "3", "5", "7"]
        );
        let ours = text.lines().find(|l| l.contains("(this one)")).unwrap();
        assert!(ours.contains(" 12 "), "{ours}");
        assert!(warning(&report).starts_with("WARNING:"));
    }
}
