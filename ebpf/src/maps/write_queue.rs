//! The BPF programs queue a packet's header writes (bpf/lib/rewrite.h, `NS_MAX_WRITES`)
//! and carry them out after the chains; a packet whose writes overflow the queue is
//! dropped as an error. xt_TCPOPTSTRIP's statement queues up to three writes (the
//! option area in 16-byte pieces), so programs with one are built only when no packet
//! can queue more than the queue holds.

use crate::ir::{Action, Chain, Program, Statement};

/// `NS_MAX_WRITES`.
pub const MAX_QUEUED_WRITES: usize = 8;

/// Writes one run of a statement may queue.
fn queued_by(s: &Statement) -> usize {
    match s {
        Statement::PayloadSet(_) => 1,
        Statement::TcpOptStrip(_) => 3,
        Statement::EcnTcp(_) => 1,
        _ => 0,
    }
}

/// Whether some rule of the program strips TCP options.
pub fn strips_tcp_options(program: &Program) -> bool {
    program.chains_in_order().any(|(_, c)| {
        c.rules.iter().any(|r| {
            r.statements
                .iter()
                .any(|s| matches!(s, Statement::TcpOptStrip(_)))
        })
    })
}

/// At most how many writes one packet queues in the program: each base chain's
/// bound, a chain's bound being its rules' writes plus the bound of every chain a
/// rule jumps or goes to (a rule runs at most once per entry into its chain).
pub fn most_queued_writes(program: &Program) -> usize {
    program
        .base_chains
        .iter()
        .map(|c| chain_bound(program, c, 0))
        .fold(0, usize::saturating_add)
}

fn chain_bound(program: &Program, chain: &Chain, depth: usize) -> usize {
    // nf_tables refuses loops; this only keeps a malformed program finite.
    if depth > 64 {
        return usize::MAX;
    }
    chain.rules.iter().fold(0, |sum, r| {
        let own = r.statements.iter().map(queued_by).sum::<usize>();
        let called = match &r.action {
            Action::Jump(name) | Action::Goto(name) => program
                .chains
                .get(name)
                .map_or(0, |c| chain_bound(program, c, depth + 1)),
            _ => 0,
        };
        sum.saturating_add(own).saturating_add(called)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{L3Scope, Rule, TcpOptStrip, Verdict};

    fn strip() -> Statement {
        Statement::TcpOptStrip(TcpOptStrip { kinds: [0; 32] })
    }

    #[test]
    fn a_chain_jumped_to_twice_counts_twice() {
        let strips = Chain {
            scope: L3Scope::Inet,
            policy: Verdict::Accept,
            rules: vec![Rule::new(vec![], Action::Continue).with(strip())],
        };
        let mut p = Program::single(Chain {
            scope: L3Scope::Inet,
            policy: Verdict::Accept,
            rules: vec![
                Rule::new(vec![], Action::Jump("x".into())),
                Rule::new(vec![], Action::Jump("x".into())),
                Rule::new(vec![], Action::Continue).with(Statement::payload_set(
                    crate::ir::WriteBase::Network,
                    8,
                    &[1],
                )),
            ],
        });
        p.chains.insert("x".into(), strips);
        assert!(strips_tcp_options(&p));
        assert_eq!(most_queued_writes(&p), 7);
    }
}
