//! Differential tests against the real kernel: each fixture in `tests/fixtures` holds what
//! unmodified nft / iptables-nft sent to kernel 6.18 in a fresh network namespace and
//! every datagram the kernel answered (recorded by `tools/capture.py`). The engine gets
//! the same datagrams, in the same order, and must answer with the same messages:
//! unicast replies per request, and the multicast events of each command.

use std::path::Path;

use nftshim_engine::{Caller, Netns, NoDataplane};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Splits a datagram into its messages.
fn messages(d: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while d.len() - pos >= 16 {
        let len = u32::from_ne_bytes(d[pos..pos + 4].try_into().unwrap()) as usize;
        if len < 16 || pos + len > d.len() {
            break;
        }
        out.push(d[pos..pos + len].to_vec());
        pos += (len + 3) & !3;
    }
    out
}

/// Splits an attribute stream into whole attributes (header and padding included).
fn attrs(b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    while b.len() - pos >= 4 {
        let len = u16::from_ne_bytes([b[pos], b[pos + 1]]) as usize;
        if len < 4 || pos + len > b.len() {
            break;
        }
        let step = ((len + 3) & !3).min(b.len() - pos);
        out.push(&b[pos..pos + step]);
        pos += step;
    }
    out
}

/// Makes what the kernel does not determine comparable:
/// - NFTA_SET_TYPE of NEWSET messages (a `%ps` of the backend's ops) is dropped;
/// - elements of NEWSETELEM messages are sorted: hash backends walk in the order of a
///   per-set random seed.
fn normalize(msg: &[u8]) -> Vec<u8> {
    let ty = u16::from_ne_bytes([msg[4], msg[5]]);
    if ty == 0x0a0c && msg.len() >= 20 {
        let mut out = msg[..20].to_vec();
        for a in attrs(&msg[20..]) {
            if u16::from_ne_bytes([a[2], a[3]]) & 0x3fff == 3 {
                let mut elems = attrs(&a[4..]);
                elems.sort();
                out.extend_from_slice(&a[..4]);
                for e in elems {
                    out.extend_from_slice(e);
                }
            } else {
                out.extend_from_slice(a);
            }
        }
        return out;
    }
    if ty != 0x0a09 || msg.len() < 20 {
        return msg.to_vec();
    }
    let mut out = msg[..20].to_vec();
    let mut pos = 20;
    while msg.len() - pos >= 4 {
        let len = u16::from_ne_bytes([msg[pos], msg[pos + 1]]) as usize;
        let kind = u16::from_ne_bytes([msg[pos + 2], msg[pos + 3]]);
        if len < 4 || pos + len > msg.len() {
            break;
        }
        let step = (len + 3) & !3;
        if kind & 0x3fff != 19 {
            out.extend_from_slice(&msg[pos..(pos + step).min(msg.len())]);
        }
        pos += step;
    }
    let l = out.len() as u32;
    out[..4].copy_from_slice(&l.to_ne_bytes());
    out
}

fn show(records: &[Vec<Vec<u8>>]) -> String {
    let mut s = String::new();
    for (i, r) in records.iter().enumerate() {
        s.push_str(&format!("  record {i}:\n"));
        for m in r {
            let ty = u16::from_ne_bytes([m[4], m[5]]);
            let fl = u16::from_ne_bytes([m[6], m[7]]);
            let seq = u32::from_ne_bytes(m[8..12].try_into().unwrap());
            let hex: String = m[16..].iter().map(|b| format!("{b:02x}")).collect();
            s.push_str(&format!(
                "    type {ty:#06x} flags {fl:#06x} seq {seq} len {}: {hex}\n",
                m.len()
            ));
        }
    }
    s
}

/// Expressions of a NEWRULE message: (name, data) pairs, for readable diffs.
fn rule_exprs(msg: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for a in attrs(&msg[20.min(msg.len())..]) {
        if u16::from_ne_bytes([a[2], a[3]]) & 0x3fff != 4 {
            continue;
        }
        for e in attrs(&a[4..]) {
            let mut name = String::new();
            let mut data = String::new();
            for x in attrs(&e[4..]) {
                let len = u16::from_ne_bytes([x[0], x[1]]) as usize;
                match u16::from_ne_bytes([x[2], x[3]]) & 0x3fff {
                    1 => {
                        name = String::from_utf8_lossy(&x[4..len])
                            .trim_end_matches('\0')
                            .to_string()
                    }
                    _ => data = x.iter().map(|b| format!("{b:02x}")).collect(),
                }
            }
            out.push((name, data));
        }
    }
    out
}

/// The first expression that differs between two NEWRULE messages.
fn expr_diff(want: &[u8], got: &[u8]) -> Option<String> {
    let (w, g) = (rule_exprs(want), rule_exprs(got));
    for (i, (a, b)) in w.iter().zip(g.iter()).enumerate() {
        if a != b {
            return Some(format!("expr {i} `{}`: kernel {} engine {}", a.0, a.1, b.1));
        }
    }
    (w.len() != g.len()).then(|| format!("expression count {} vs {}", w.len(), g.len()))
}

fn first_diff(w: &[Vec<Vec<u8>>], g: &[Vec<Vec<u8>>]) -> String {
    let wf: Vec<&Vec<u8>> = w.iter().flatten().collect();
    let gf: Vec<&Vec<u8>> = g.iter().flatten().collect();
    for (a, b) in wf.iter().zip(gf.iter()) {
        if a != b {
            let ty = u16::from_ne_bytes([a[4], a[5]]);
            if ty == 0x0a06 {
                if let Some(d) = expr_diff(a, b) {
                    return d;
                }
            }
            return format!("message type {ty:#06x}");
        }
    }
    format!("message count {} vs {}", wf.len(), gf.len())
}

fn flatten(r: &[Vec<Vec<u8>>]) -> Vec<Vec<u8>> {
    r.iter().flatten().cloned().collect()
}

/// Whether a reply is a dump: its first message is a multipart part.
fn is_dump(r: &[Vec<Vec<u8>>]) -> bool {
    r.first()
        .and_then(|x| x.first())
        .is_some_and(|m| u16::from_ne_bytes([m[6], m[7]]) & 0x2 != 0)
}

fn records(datagrams: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
    datagrams
        .iter()
        .map(|d| messages(d).iter().map(|m| normalize(m)).collect())
        .collect()
}

/// The command name the kernel reported in NFTA_GEN_PROC_NAME, if any reply has it.
fn comm_of(cmd: &serde_json::Value) -> String {
    let replies = cmd["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|ex| ex["recv"].as_array().unwrap().iter());
    let events = cmd["multicast"].as_array().unwrap().iter();
    {
        for r in replies.chain(events) {
            for m in messages(&unhex(r.as_str().unwrap())) {
                if u16::from_ne_bytes([m[4], m[5]]) == 0x0a0f && m.len() > 36 {
                    let name = &m[40..];
                    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                    return String::from_utf8_lossy(&name[..end]).into_owned();
                }
            }
        }
    }
    "nft".to_string()
}

fn replay(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let fixture: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mut ns = Netns::new();
    let mut dp = NoDataplane;
    let mut failures = Vec::new();
    let mut compared = 0;
    for cmd in fixture["commands"].as_array().unwrap() {
        let name = cmd["command"].as_str().unwrap();
        let comm = comm_of(cmd);
        let pid = cmd["pid"].as_u64().unwrap_or(0) as u32;
        let ext_ack = cmd["ext_ack"].as_bool().unwrap_or(false);
        let mut multicast = Vec::new();
        for (i, ex) in cmd["exchanges"].as_array().unwrap().iter().enumerate() {
            // The port id the kernel wrote into this exchange's replies (sockets come
            // and go within one command, and reuse file descriptors).
            let reply_port = ex["recv"].as_array().unwrap().first().map(|r| {
                let b = unhex(r.as_str().unwrap());
                u32::from_ne_bytes(b[12..16].try_into().unwrap())
            });
            let portid = reply_port
                .or(ex["portid"].as_u64().map(|p| p as u32))
                .or(cmd["portid"].as_u64().map(|p| p as u32))
                .unwrap_or(0);

            let caller = Caller {
                portid,
                pid,
                comm: comm.clone(),
                ext_ack,
                cap_ack: false,
                net_admin: true,
                private_cgroupns: false,
                netns_private_userns: false,
            };
            let sent = unhex(ex["send"].as_str().unwrap());
            let out = ns.handle_datagram(&caller, &sent, &mut dp);
            multicast.extend(out.multicast.iter().map(|(_, r)| r.clone()));
            let want: Vec<Vec<u8>> = ex["recv"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| unhex(r.as_str().unwrap()))
                .collect();
            let (w, mut g) = (records(&want), records(&out.unicast));
            // iptables reads the revision of a compat query and closes the socket: the
            // ACK that follows is never read, so the capture cannot show it.
            if sent.len() >= 6
                && u16::from_ne_bytes([sent[4], sent[5]]) == 0x0b00
                && g.len() == w.len() + 1
            {
                let last = g
                    .last()
                    .and_then(|r| r.first())
                    .cloned()
                    .unwrap_or_default();
                if last.len() >= 20
                    && u16::from_ne_bytes([last[4], last[5]]) == 2
                    && last[16..20] == [0; 4]
                {
                    g.pop();
                }
            }
            compared += 1;
            // Dump parts may be packed differently (the kernel fills buffers sized by
            // the reader); everything else must match record for record, and ACKs and
            // errors always come alone.
            let same = if is_dump(&w) {
                flatten(&w) == flatten(&g)
            } else {
                w == g
            };
            let lone_acks = g
                .iter()
                .all(|r| r.len() == 1 || r.iter().all(|m| u16::from_ne_bytes([m[4], m[5]]) != 2));
            if !same || !lone_acks {
                failures.push(format!(
                    "{}: `{name}` exchange {i} [{}] (sent {})\n kernel:\n{} engine:\n{}",
                    path.display(),
                    first_diff(&w, &g),
                    ex["send"].as_str().unwrap(),
                    show(&w),
                    show(&g)
                ));
            }
        }
        let want: Vec<Vec<u8>> = cmd["multicast"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| unhex(r.as_str().unwrap()))
            .collect();
        let flat = |v: Vec<Vec<Vec<u8>>>| v.into_iter().flatten().collect::<Vec<_>>();
        let (w, g) = (flat(records(&want)), flat(records(&multicast)));
        if w != g {
            failures.push(format!(
                "{}: `{name}` multicast\n kernel:\n{} engine:\n{}",
                path.display(),
                show(&[w]),
                show(&[g])
            ));
        }
    }
    eprintln!("{}: {compared} exchanges", path.display());
    if compared == 0 {
        return Err(format!("{}: nothing to compare", path.display()));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

#[test]
fn fixtures_match_the_kernel() {
    // NFTSHIM_FIXTURES points at another directory of captures (e.g. a large corpus kept
    // out of the repository).
    let dir = match std::env::var_os("NFTSHIM_FIXTURES") {
        Some(d) => std::path::PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
    };
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
    paths.sort();
    assert!(!paths.is_empty());
    let mut errors = Vec::new();
    for p in &paths {
        if let Err(e) = replay(p) {
            errors.push(e);
        }
    }
    assert!(
        errors.is_empty(),
        "{} of {} fixtures differ:\n{}",
        errors.len(),
        paths.len(),
        errors.join("\n")
    );
}
