//! Where the data plane's compile time goes for one ruleset, stage by stage: decompile,
//! instantiate (flatten per attach point) and the map builder, over an engine state
//! saved by nftshimd (`netns-*.json`'s "state", as dataplane/tests/fixtures/capture.sh
//! keeps it). Then the same after appending one rule, as `nft add rule` does.
//!
//!     cargo run -p nftshim-dataplane --release --example compile_timing -- STATE.json

use std::time::{Duration, Instant};

use nftshim_dataplane::compile::{decompile, instantiate, Facts};
use nftshim_ebpf::maps::{compile_program, compile_program_after};
use nftshim_engine::Netns;

// As nftshimd: the builder's allocations cost what they cost there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: compile_timing STATE.json");
    let text = std::fs::read_to_string(&path).expect("read the state");
    let state: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let ns = Netns::from_persisted(state).expect("engine state");
    let facts = Facts {
        links: [
            (1, "lo".to_string()),
            (2, "v0".to_string()),
            (3, "v1".to_string()),
        ]
        .into(),
        local_v4: vec!["127.0.0.0/8".parse().unwrap()],
        local_v6: vec!["::1/128".parse().unwrap()],
        ..Facts::default()
    };
    let (mut dec, mut inst, mut comp) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..7 {
        let t = Instant::now();
        let program = decompile(&ns.view()).expect("decompiled");
        dec.push(t.elapsed());
        let t = Instant::now();
        let plan = instantiate(&program, &facts).expect("instantiated");
        inst.push(t.elapsed());
        let chain = plan.chains.values().next().expect("a program").clone();
        let t = Instant::now();
        let compiled = compile_program(&chain).expect("compiled");
        comp.push(t.elapsed());
        std::hint::black_box(compiled);
    }
    println!(
        "decompile {:?}, instantiate {:?}, compile_program {:?}",
        median(dec),
        median(inst),
        median(comp)
    );

    // One rule appended at the end of the last chain (a copy of its first rule), then
    // deleted again: compiled from scratch and from the previous compile.
    let program = decompile(&ns.view()).expect("decompiled");
    let plan = instantiate(&program, &facts).expect("instantiated");
    let before = plan.chains.values().next().expect("a program").clone();
    let mut after = (*before).clone();
    let last = after
        .base_chains
        .iter_mut()
        .rev()
        .find(|c| !c.rules.is_empty())
        .expect("a rule");
    last.rules.push(last.rules[0].clone());
    let compiled = compile_program(&before).expect("compiled");
    let (mut full, mut add, mut del) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..7 {
        let t = Instant::now();
        std::hint::black_box(compile_program(&after).expect("compiled"));
        full.push(t.elapsed());
        let t = Instant::now();
        let (appended, incremental) =
            compile_program_after(&after, Some((&before, &compiled))).expect("compiled");
        add.push(t.elapsed());
        assert!(incremental, "the append is an update");
        let t = Instant::now();
        let (deleted, incremental) =
            compile_program_after(&before, Some((&after, &appended))).expect("compiled");
        del.push(t.elapsed());
        assert!(incremental, "the delete is an update");
        std::hint::black_box(deleted);
    }
    println!(
        "one rule appended: compile_program {:?}, compile_program_after {:?}; deleted again: compile_program_after {:?}",
        median(full),
        median(add),
        median(del)
    );
}
