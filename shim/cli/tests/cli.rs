//! `nftshim exec` and `nftshim status` as a user runs them. Reuses the preload tests'
//! fake daemon and helpers; needs root for the namespace test.

#[path = "../../preload/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::fake_daemon::{Behaviour, FakeDaemon};
use support::{preload_lib, run, text, Netns};

const LIMIT: Duration = Duration::from_secs(30);

fn nftshim() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nftshim"));
    c.env_remove("NFTSHIM_PRELOAD")
        .env_remove("NFTSHIM_SOCKET")
        .env_remove("LD_PRELOAD");
    c
}

fn scratch_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let d = std::env::temp_dir().join(format!(
        "nftshim-cli-{tag}-{}-{nanos:x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn exec_passes_arguments_environment_and_exit_status_through() {
    let lib = preload_lib();
    let dir = scratch_dir("args");
    let mut c = nftshim();
    c.current_dir(&dir)
        .env("NFTSHIM_PRELOAD", &lib)
        .env("LD_PRELOAD", "/nonexistent/other.so");
    c.args(["exec", "--socket", "rel/nftshim.sock", "--", "sh", "-c"]);
    c.arg(r#"printf '%s|' "$@"; printf '\n%s\n%s\n' "$LD_PRELOAD" "$NFTSHIM_SOCKET"; exit 7"#);
    c.args(["sh", "a", "b c", "-d", "--socket"]);
    let out = run(c, LIMIT);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "a|b c|-d|--socket|");
    assert_eq!(lines[1], format!("{}:/nonexistent/other.so", lib.display()));
    assert_eq!(lines[2], dir.join("rel/nftshim.sock").display().to_string());
}

#[test]
fn exec_uses_nftshim_socket_from_the_environment_when_no_flag_is_given() {
    let mut c = nftshim();
    c.env("NFTSHIM_PRELOAD", preload_lib())
        .env("NFTSHIM_SOCKET", "/run/elsewhere.sock");
    c.args(["exec", "sh", "-c", "echo $NFTSHIM_SOCKET"]);
    let out = run(c, LIMIT);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), "/run/elsewhere.sock");
}

#[test]
fn exec_finds_the_library_beside_its_executable() {
    let dir = scratch_dir("beside");
    let exe = dir.join("nftshim");
    std::fs::copy(env!("CARGO_BIN_EXE_nftshim"), &exe).unwrap();
    std::fs::copy(preload_lib(), dir.join("libnftshim_preload.so")).unwrap();
    let mut c = Command::new(&exe);
    c.env_remove("NFTSHIM_PRELOAD").env_remove("LD_PRELOAD");
    c.args(["exec", "--", "sh", "-c", "echo $LD_PRELOAD"]);
    let out = run(c, LIMIT);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        dir.join("libnftshim_preload.so").display().to_string()
    );
}

#[test]
fn exec_without_the_library_says_where_it_looked() {
    if Path::new("/usr/lib/nftshim/libnftshim_preload.so").exists() {
        eprintln!("skipped: a system-wide libnftshim_preload.so is installed");
        return;
    }
    let dir = scratch_dir("nolib");
    let exe = dir.join("nftshim");
    std::fs::copy(env!("CARGO_BIN_EXE_nftshim"), &exe).unwrap();
    let mut c = Command::new(&exe);
    c.env_remove("NFTSHIM_PRELOAD").args(["exec", "--", "true"]);
    let out = run(c, LIMIT);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot find libnftshim_preload.so") && err.contains("/usr/lib/nftshim"),
        "{err}"
    );
}

#[test]
fn exec_of_a_missing_command_exits_127() {
    let mut c = nftshim();
    c.env("NFTSHIM_PRELOAD", preload_lib())
        .args(["exec", "--", "/nonexistent/program"]);
    let out = run(c, LIMIT);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        text(&out.stderr).contains("cannot run /nonexistent/program"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn exec_serves_nft_from_the_daemon_in_the_callers_namespace() {
    let ns = Netns::new();
    let daemon = FakeDaemon::start(Behaviour::default());
    let lib = preload_lib();
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        &ns.name,
        env!("CARGO_BIN_EXE_nftshim"),
        "exec",
        "--socket",
    ]);
    c.arg(&daemon.path).args(["--", "nft", "list", "ruleset"]);
    c.env("NFTSHIM_PRELOAD", &lib).env_remove("LD_PRELOAD");
    let out = run(c, LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = daemon.log();
    assert_eq!(log.hellos.len(), 1, "{log:?}");
    assert_eq!(log.hellos[0].netns_inode, ns.inode());
    assert!(
        log.messages().iter().any(|(t, _)| *t == 0x0a10),
        "nft asked the daemon for its generation"
    );
}

const REPORT: &str = r#"{"dataplane":"none","enforcing":false,"namespaces":[
    {"inode":4026532281,"name":"blue","generation":3,"tables":2,"sockets":1,
     "dataplane":{"programs":2,"loads":3,"patches":4,"map_writes":5}},
    {"inode":4026531840,"generation":1,"extra":"ignored"}]}"#;

#[test]
fn status_shows_the_report_and_warns_when_nothing_is_enforced() {
    let daemon = FakeDaemon::start(Behaviour {
        status_json: REPORT.into(),
        ..Behaviour::default()
    });
    let mut c = nftshim();
    c.arg("status").arg("--socket").arg(&daemon.path);
    let out = run(c, LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("data plane: none (NOT enforcing)"),
        "{stdout}"
    );
    assert!(stdout.contains("namespaces: 2"), "{stdout}");
    let blue = stdout
        .lines()
        .find(|l| l.contains("blue"))
        .expect("blue listed");
    assert_eq!(
        blue.split_whitespace().collect::<Vec<_>>(),
        ["blue", "4026532281", "3", "2", "1", "2", "3", "4", "5"]
    );
    let unnamed = stdout
        .lines()
        .find(|l| l.contains(" 4026531840 "))
        .expect("second namespace listed");
    let unnamed: Vec<&str> = unnamed.split_whitespace().collect();
    assert!(
        unnamed == ["-", "4026531840", "1", "-", "-", "-", "-", "-", "-"]
            || unnamed
                == [
                    "-",
                    "(this",
                    "one)",
                    "4026531840",
                    "1",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-"
                ],
        "{unnamed:?}"
    );
    assert!(
        text(&out.stderr)
            .starts_with("WARNING: nftshimd's data plane 'none' does NOT enforce rules"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(daemon.log().statuses, 1);
}

#[test]
fn status_of_an_enforcing_daemon_has_no_warning() {
    let json = r#"{"dataplane":"ebpf","enforcing":true,"namespaces":[]}"#;
    let daemon = FakeDaemon::start(Behaviour {
        status_json: json.into(),
        ..Behaviour::default()
    });
    let mut c = nftshim();
    c.env("NFTSHIM_SOCKET", &daemon.path).arg("status");
    let out = run(c, LIMIT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("data plane: ebpf (enforcing)"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        !text(&out.stderr).contains("WARNING"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn status_json_prints_the_daemons_answer() {
    let daemon = FakeDaemon::start(Behaviour {
        status_json: REPORT.into(),
        ..Behaviour::default()
    });
    let mut c = nftshim();
    c.args(["status", "--json", "--socket"]).arg(&daemon.path);
    let out = run(c, LIMIT);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim_end(), REPORT);
}

#[test]
fn status_without_a_daemon_fails_clearly() {
    let mut c = nftshim();
    c.args(["status", "--socket", "/nonexistent/nftshim.sock"]);
    let out = run(c, LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "nftshim: cannot reach nftshimd at /nonexistent/nftshim.sock: No such file or directory"
    );
}

#[test]
fn status_rejects_an_answer_it_cannot_read() {
    let daemon = FakeDaemon::start(Behaviour {
        status_json: "{\"dataplane\": 5}".into(),
        ..Behaviour::default()
    });
    let mut c = nftshim();
    c.args(["status", "--socket"]).arg(&daemon.path);
    let out = run(c, LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not the JSON nftshim expects"),
        "{}",
        text(&out.stderr)
    );
}
