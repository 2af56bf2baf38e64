//! A read-only view of a ruleset for data planes: the tables, their chains in order,
//! rules with their expressions (name and raw attributes, in the kernel's dump form),
//! sets with their elements, stateful objects and flowtables.
//!
//! A data plane (e.g. an eBPF compiler) walks base chains from their hooks, follows
//! jumps by chain name, and resolves lookups by set name within the same table.

use crate::state::Ruleset;
pub use crate::state::{BaseChain, Chain, Elem, ElemData, Expr, Flowtable, Obj, Rule, Set, Table};

#[derive(Clone, Copy, Debug)]
pub struct RulesetView<'a> {
    rs: &'a Ruleset,
}

impl<'a> RulesetView<'a> {
    pub(crate) fn new(rs: &'a Ruleset) -> Self {
        RulesetView { rs }
    }

    /// Tables in creation order.
    pub fn tables(&self) -> &'a [Table] {
        &self.rs.tables
    }

    pub fn table(&self, family: u8, name: &str) -> Option<&'a Table> {
        self.rs.table(family, name.as_bytes())
    }

    /// Base chains of every table with their tables: what hooks into the packet path.
    pub fn base_chains(&self) -> impl Iterator<Item = (&'a Table, &'a Chain, &'a BaseChain)> + 'a {
        self.rs.tables.iter().flat_map(|t| {
            t.chains
                .iter()
                .filter_map(move |c| c.base.as_ref().map(|b| (t, c, b)))
        })
    }

    /// The chain a jump or goto in `table` names.
    pub fn jump_target(&self, table: &'a Table, chain: &str) -> Option<&'a Chain> {
        table.chains.iter().find(|c| c.name == chain)
    }

    /// The set a lookup, dynset or objref expression in `table` names.
    pub fn set_of(&self, table: &'a Table, expr: &Expr) -> Option<&'a Set> {
        let name = crate::expr::set_ref(expr)?;
        table.sets.iter().find(|s| s.name == name)
    }
}

impl Table {
    /// Whether the table's base chains are detached from their hooks.
    pub fn is_dormant(&self) -> bool {
        self.flags & netlink_proto::consts::NFT_TABLE_F_DORMANT != 0
    }
}
