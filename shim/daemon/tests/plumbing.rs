//! The daemon in-process with a fake engine, to drive what the engine stub cannot yet:
//! replies larger than the socket, multicast events, the caller's identity as the
//! engine sees it, and saving/restoring a namespace whose ruleset changed.
//! Needs root (namespaces, setns).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{find_namespace, status, Client, TestNetns};
use netlink_proto::extra::{NETLINK_ADD_MEMBERSHIP, NETLINK_EXT_ACK, SOL_NETLINK};
use nftshim_engine::{Caller, Dataplane, Output};
use nftshim_ipc::Op;
use nftshimd::outqueue::Limits;
use nftshimd::{DataplaneKind, NamespaceState, Options, Server};
use serde::{Deserialize, Serialize};

/// Understands a few text commands instead of netlink:
/// `commit:NAME` bumps the generation, logs NAME, answers `ack`, multicasts `event:NAME`
/// to group 7; `dump:N:SIZE` answers N records of SIZE bytes numbered in their first 4;
/// `whoami` answers the Caller as JSON; `log` answers the log as JSON; `panic` panics.
#[derive(Debug, Serialize, Deserialize)]
struct FakeNetns {
    genid: u32,
    log: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Whoami {
    portid: u32,
    pid: u32,
    comm: String,
    ext_ack: bool,
    net_admin: bool,
}

impl NamespaceState for FakeNetns {
    fn empty() -> Self {
        FakeNetns {
            genid: 1,
            log: vec![],
        }
    }

    fn handle_datagram(
        &mut self,
        caller: &Caller,
        datagram: &[u8],
        _: &mut dyn Dataplane,
    ) -> Output {
        let text = String::from_utf8_lossy(datagram).into_owned();
        let parts: Vec<&str> = text.split(':').collect();
        let mut out = Output::default();
        match parts[..] {
            ["commit", name] => {
                self.genid += 1;
                self.log.push(name.to_string());
                out.multicast
                    .push((7, format!("event:{name}").into_bytes()));
                out.unicast.push(b"ack".to_vec());
            }
            // A change the sender asked to see echoed: the multicast copy skips it.
            ["echo", name] => {
                self.genid += 1;
                out.multicast
                    .push((7, format!("event:{name}").into_bytes()));
                out.multicast_skip_portid.push(Some(caller.portid));
                out.unicast.push(format!("echo:{name}").into_bytes());
            }
            ["dump", n, size] => {
                let (n, size): (u32, usize) = (n.parse().unwrap(), size.parse().unwrap());
                for i in 0..n {
                    let mut rec = vec![0u8; size];
                    rec[..4].copy_from_slice(&i.to_ne_bytes());
                    out.unicast.push(rec);
                }
            }
            ["whoami"] => out.unicast.push(
                serde_json::to_vec(&Whoami {
                    portid: caller.portid,
                    pid: caller.pid,
                    comm: caller.comm.clone(),
                    ext_ack: caller.ext_ack,
                    net_admin: caller.net_admin,
                })
                .unwrap(),
            ),
            ["log"] => out.unicast.push(serde_json::to_vec(&self.log).unwrap()),
            ["panic"] => panic!("the fake engine fails on purpose"),
            _ => {}
        }
        out
    }

    fn genid(&self) -> u32 {
        self.genid
    }

    fn to_persisted(&self) -> Box<serde_json::value::RawValue> {
        serde_json::value::to_raw_value(self).unwrap()
    }

    fn from_persisted(value: serde_json::Value) -> Result<Self, String> {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}

/// nftshimd with the fake engine on a runtime of its own.
struct InProcess {
    rt: tokio::runtime::Runtime,
    socket: PathBuf,
    state_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    fn start(dir: &Path, limits: Limits) -> InProcess {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let opts = Options {
            socket: dir.join("run/nftshim.sock"),
            state_dir: dir.join("state"),
            dataplane: DataplaneKind::None,
            limits,
        };
        let server = rt
            .block_on(async { Server::<FakeNetns>::start(&opts) })
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(server.serve(async move {
            let _ = rx.await;
        }));
        InProcess {
            rt,
            socket: opts.socket,
            state_dir: opts.state_dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.rt
            .block_on(self.task.take().unwrap())
            .unwrap()
            .unwrap();
    }
}

fn opened(socket: &Path) -> Client {
    let mut c = Client::connect(socket).unwrap();
    assert!(c.hello() > 0);
    c
}

fn index_of(rec: &[u8]) -> u32 {
    u32::from_ne_bytes(rec[..4].try_into().unwrap())
}

#[test]
fn events_reach_the_members_of_that_namespace_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = InProcess::start(dir.path(), Limits::default());
    let (a, b) = (TestNetns::new(), TestNetns::new());
    let (listener, bystander, sender) = a.run(|| {
        let l = opened(&d.socket);
        assert_eq!(l.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, 7), 0);
        (l, opened(&d.socket), opened(&d.socket))
    });
    let elsewhere = b.run(|| {
        let l = opened(&d.socket);
        assert_eq!(l.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, 7), 0);
        l
    });
    // A legacy bind() group mask works too.
    let bound_listener = a.run(|| {
        let l = opened(&d.socket);
        assert!(l.bind(0, 1 << 6) > 0);
        l
    });

    assert_eq!(sender.request(b"commit:t1"), 9);
    assert_eq!(
        sender.try_read_app().as_deref(),
        Some(&b"ack"[..]),
        "reply queued before Done"
    );
    assert_eq!(
        listener.read_app(Duration::from_secs(5)).as_deref(),
        Some(&b"event:t1"[..])
    );
    assert_eq!(
        bound_listener.read_app(Duration::from_secs(5)).as_deref(),
        Some(&b"event:t1"[..])
    );
    assert_eq!(
        bystander.read_app(Duration::from_millis(200)),
        None,
        "not a member"
    );
    assert_eq!(
        elsewhere.read_app(Duration::from_millis(200)),
        None,
        "other namespace"
    );
    assert_eq!(sender.try_read_app(), None, "exactly one reply");

    // Leaving the group stops delivery.
    assert_eq!(
        listener.setsockopt(
            SOL_NETLINK,
            netlink_proto::extra::NETLINK_DROP_MEMBERSHIP,
            7
        ),
        0
    );
    assert_eq!(sender.request(b"commit:t2"), 9);
    assert_eq!(
        bound_listener.read_app(Duration::from_secs(5)).as_deref(),
        Some(&b"event:t2"[..])
    );
    assert_eq!(listener.read_app(Duration::from_millis(200)), None);
    d.stop();
}

#[test]
fn a_reply_larger_than_the_socket_is_delivered_in_order_as_the_app_reads() {
    let dir = tempfile::tempdir().unwrap();
    let d = InProcess::start(dir.path(), Limits::default());
    let ns = TestNetns::new();
    ns.run(|| {
        let c = opened(&d.socket);
        // 8 MB of 4 KB records: dozens of times what the socket holds.
        assert_eq!(
            c.request(b"dump:2000:4000"),
            14,
            "Done comes while most records still wait"
        );
        assert_eq!(c.sync(), 1, "records are waiting to be read");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut next = 0;
        while next < 2000 {
            assert!(Instant::now() < deadline, "stalled at record {next}");
            if let Some(rec) = c.read_app(Duration::from_millis(500)) {
                assert_eq!(rec.len(), 4000);
                assert_eq!(index_of(&rec), next);
                next += 1;
            }
        }
        assert_eq!(c.sync(), 0, "everything read, nothing left in the daemon");
        assert_eq!(c.try_read_app(), None);
    });
    d.stop();
}

#[test]
fn so_rcvbuf_lets_a_big_reply_fit_before_done() {
    let dir = tempfile::tempdir().unwrap();
    let d = InProcess::start(dir.path(), Limits::default());
    let ns = TestNetns::new();
    ns.run(|| {
        let c = opened(&d.socket);
        assert_eq!(
            c.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20),
            0
        );
        assert_eq!(c.request(b"dump:500:4000"), 13);
        // All of it is in the socket already: no waiting, no drainer involved.
        for i in 0..500 {
            let rec = c
                .try_read_app()
                .unwrap_or_else(|| panic!("record {i} not queued before Done"));
            assert_eq!(index_of(&rec), i);
        }
        assert_eq!(c.sync(), 0);
    });
    d.stop();
}

#[test]
fn the_engine_sees_who_is_calling() {
    let dir = tempfile::tempdir().unwrap();
    let d = InProcess::start(dir.path(), Limits::default());
    let ns = TestNetns::new();
    let comm = std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim()
        .to_string();
    ns.run(|| {
        let c = opened(&d.socket);
        let whoami = |c: &Client| -> Whoami {
            assert_eq!(c.request(b"whoami"), 6);
            serde_json::from_slice(&c.try_read_app().unwrap()).unwrap()
        };
        let w = whoami(&c);
        assert_eq!((w.portid, w.pid), (std::process::id(), std::process::id()));
        assert_eq!(w.comm, comm);
        assert!(w.net_admin, "root in the initial user namespace");
        assert!(!w.ext_ack);
        assert_eq!(c.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1), 0);
        assert!(whoami(&c).ext_ack);

        let c2 = opened(&d.socket);
        assert_eq!(c2.bind(4321, 0), 4321);
        assert_eq!(whoami(&c2).portid, 4321);
    });
    d.stop();
}

/// Waits for the state writer (it works in the background) to have saved `genid`.
fn wait_saved(file: &Path, genid: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let saved = std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["genid"].as_u64());
        if saved == Some(genid) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "generation {genid} not saved: {saved:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_changed_namespace_is_saved_atomically_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let ns = TestNetns::new();
    let cookie = ns.cookie();
    let d = InProcess::start(dir.path(), Limits::default());
    let file = d.state_dir.join(format!("netns-{cookie}.json"));
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    ns.run(|| {
        let c = opened(&d.socket);
        assert_eq!(c.request(b"log"), 3);
        assert!(!file.exists(), "nothing changed, nothing saved");
        assert_eq!(c.request(b"commit:a"), 8);
        wait_saved(&file, 2);
        let first = ino(&file);
        assert_eq!(c.request(b"commit:b"), 8);
        wait_saved(&file, 3);
        let second = ino(&file);
        assert_ne!(first, second, "replaced by rename, not rewritten in place");
        assert_eq!(c.request(b"whoami"), 6);
        assert_eq!(ino(&file), second, "unchanged generation: not saved again");
    });
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved["cookie"].as_u64(), Some(cookie));
    assert_eq!(saved["genid"], 3);
    assert_eq!(
        saved["boot_id"].as_str().unwrap(),
        nftshimd::persist::current_boot_id().unwrap()
    );
    assert_eq!(saved["state"]["log"], serde_json::json!(["a", "b"]));
    let leftovers: Vec<_> = std::fs::read_dir(&d.state_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The daemon notices the closed connection asynchronously.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entry = find_namespace(&status(&d.socket), cookie);
        let entry = entry.expect("kept although idle: it has a ruleset");
        if entry["sockets"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "session still open: {entry}");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.stop();

    let d = InProcess::start(dir.path(), Limits::default());
    let entry = find_namespace(&status(&d.socket), cookie).expect("restored");
    assert_eq!(entry["generation"], 3);
    ns.run(|| {
        let c = opened(&d.socket);
        assert_eq!(c.request(b"log"), 3);
        assert_eq!(c.try_read_app().as_deref(), Some(&br#"["a","b"]"#[..]));
    });
    d.stop();
}

#[test]
fn an_engine_failure_closes_only_that_session() {
    let dir = tempfile::tempdir().unwrap();
    let d = InProcess::start(dir.path(), Limits::default());
    let ns = TestNetns::new();
    ns.run(|| {
        let victim = opened(&d.socket);
        let other = opened(&d.socket);
        victim
            .send_record(nftshim_ipc::Op::Request, b"panic", &[])
            .unwrap();
        assert_eq!(
            victim.recv_done().unwrap(),
            None,
            "the failing session is closed"
        );
        assert_eq!(other.request(b"commit:x"), 8, "the namespace still serves");
        assert_eq!(other.try_read_app().as_deref(), Some(&b"ack"[..]));
    });
    d.stop();
}

#[test]
fn a_slow_listener_loses_events_but_nobody_else_waits() {
    let dir = tempfile::tempdir().unwrap();
    let d = InProcess::start(
        dir.path(),
        Limits {
            multicast_bytes: 16 << 10,
            ..Limits::default()
        },
    );
    let ns = TestNetns::new();
    ns.run(|| {
        let slow = opened(&d.socket);
        assert_eq!(slow.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, 7), 0);
        let sender = opened(&d.socket);
        let pad = "p".repeat(2000);
        for i in 0..300 {
            let cmd = format!("commit:{i:04}{pad}");
            assert_eq!(sender.request(cmd.as_bytes()), cmd.len() as i64);
            assert_eq!(
                sender.try_read_app().as_deref(),
                Some(&b"ack"[..]),
                "ack {i}"
            );
        }
        let mut got = vec![];
        while let Some(ev) = slow.read_app(Duration::from_millis(300)) {
            got.push(String::from_utf8_lossy(&ev[6..10]).parse::<u32>().unwrap());
        }
        assert!(
            !got.is_empty() && got.len() < 300,
            "received {} of 300",
            got.len()
        );
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "kept events stay in order"
        );
        assert_eq!(got[0], 0);
    });
    d.stop();
}

#[test]
fn request_parts_reach_the_engine_as_one_datagram() {
    let dir = tempfile::tempdir().unwrap();
    let d = InProcess::start(dir.path(), Limits::default());
    let ns = TestNetns::new();
    ns.run(|| {
        let c = opened(&d.socket);
        // "whoami" split in three: the engine must see the concatenation, once.
        assert_eq!(c.call(Op::RequestPart, b"who"), 0);
        assert_eq!(c.call(Op::RequestPart, b"am"), 0);
        assert_eq!(c.request(b"i"), 6, "Done counts the whole datagram");
        let w: Whoami = serde_json::from_slice(&c.try_read_app().unwrap()).unwrap();
        assert_eq!(w.pid, std::process::id());
        // Another op between parts abandons them: "who" + Sync + "ami" is not "whoami".
        assert_eq!(c.call(Op::RequestPart, b"who"), 0);
        let _ = c.call(Op::Sync, b"");
        assert_eq!(c.request(b"ami"), 3);
        assert!(
            c.try_read_app().is_none(),
            "the fake engine ignores \"ami\""
        );
    });
    d.stop();
}

#[test]
fn the_sender_of_an_echoed_change_is_left_out_of_its_multicast_copy() {
    let dir = tempfile::tempdir().unwrap();
    let d = InProcess::start(dir.path(), Limits::default());
    let ns = TestNetns::new();
    ns.run(|| {
        let sender = opened(&d.socket);
        let listener = opened(&d.socket);
        for c in [&sender, &listener] {
            assert_eq!(c.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, 7), 0);
        }
        assert_eq!(sender.request(b"echo:t"), 6);
        assert_eq!(sender.try_read_app().as_deref(), Some(&b"echo:t"[..]));
        assert_eq!(
            listener.read_app(Duration::from_secs(5)).as_deref(),
            Some(&b"event:t"[..])
        );
        assert_eq!(
            sender.read_app(Duration::from_millis(200)),
            None,
            "no second copy"
        );
    });
    d.stop();
}
