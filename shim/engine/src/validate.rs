//! Commit-time validation (`nft_table_validate`, `nft_chain_validate`): every chain
//! reachable from a base chain is walked with that base chain's type and hook; jumps
//! nest at most 16 deep (EMLINK), never into a base chain (ELOOP), and expressions
//! whose `->validate` op restricts hooks or chain types refuse other base chains.

use std::collections::HashMap;

use netlink_proto::consts::*;
use netlink_proto::extra::*;
use netlink_proto::extra::{
    NFPROTO_ARP, NFPROTO_BRIDGE, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_NETDEV,
};

use crate::errno::*;
use crate::expr;
use crate::state::{BaseChain, Chain, ElemData, Expr, Table};

/// `NFT_JUMP_STACK_SIZE`.
const JUMP_STACK_SIZE: u32 = 16;

const PRE: u32 = 1 << NF_INET_PRE_ROUTING;
const IN: u32 = 1 << NF_INET_LOCAL_IN;
const FWD: u32 = 1 << NF_INET_FORWARD;
const OUT: u32 = 1 << NF_INET_LOCAL_OUT;
const POST: u32 = 1 << NF_INET_POST_ROUTING;
const INGRESS: u32 = 1 << NF_INET_INGRESS;

/// The base chain a walk started from (`ctx->chain` during validation).
struct Ctx<'a> {
    family: u8,
    base: &'a BaseChain,
}

/// What `chain->vstate` remembers: the deepest level a chain was validated at, per
/// chain type, and the hooks it was validated for.
#[derive(Default, Clone)]
struct VState {
    depth: u32,
    hooks: HashMap<String, u32>,
}

pub fn table(t: &Table) -> Result<(), i32> {
    let mut vstate: HashMap<&str, VState> = HashMap::new();
    for c in &t.chains {
        let Some(base) = &c.base else { continue };
        let cx = Ctx {
            family: t.family,
            base,
        };
        chain(t, c, &cx, 0, &mut vstate)?;
    }
    Ok(())
}

fn chain<'t>(
    t: &'t Table,
    c: &'t Chain,
    cx: &Ctx<'_>,
    level: u32,
    vs: &mut HashMap<&'t str, VState>,
) -> Result<(), i32> {
    if level == JUMP_STACK_SIZE {
        return Err(EMLINK);
    }
    if level > 0 {
        if c.is_base() {
            return Err(ELOOP);
        }
        if let Some(v) = vs.get(c.name.as_str()) {
            let mask = v.hooks.get(&cx.base.chain_type).copied().unwrap_or(0);
            if v.depth >= level && mask & (1 << cx.base.hooknum) != 0 {
                return Ok(());
            }
        }
    }
    for r in c.rules.iter().filter(|r| !r.context_free()) {
        for e in &r.exprs {
            expression(t, e, cx, level, vs)?;
        }
    }
    let v = vs.entry(c.name.as_str()).or_default();
    *v.hooks.entry(cx.base.chain_type.clone()).or_insert(0) |= 1 << cx.base.hooknum;
    v.depth = v.depth.max(level);
    Ok(())
}

fn jump<'t>(
    t: &'t Table,
    target: &str,
    cx: &Ctx<'_>,
    level: u32,
    vs: &mut HashMap<&'t str, VState>,
) -> Result<(), i32> {
    match t.chains.iter().find(|c| c.name == target) {
        Some(c) => chain(t, c, cx, level + 1, vs),
        None => Ok(()),
    }
}

/// `nft_chain_validate_hooks`.
fn hooks(cx: &Ctx<'_>, mask: u32) -> Result<(), i32> {
    if (1 << cx.base.hooknum) & mask != 0 {
        Ok(())
    } else {
        Err(EOPNOTSUPP)
    }
}

/// `nft_chain_validate_dependency`: the base chain must be of that type.
fn dependency(cx: &Ctx<'_>, chain_type: &str) -> Result<(), i32> {
    if cx.base.chain_type == chain_type {
        Ok(())
    } else {
        Err(EOPNOTSUPP)
    }
}

/// Whether [`expression`] accepts `e` in every base chain, at every depth, whatever the
/// table holds: it names no chain type or hook restriction and jumps nowhere.
pub fn context_free(e: &Expr) -> bool {
    let u = |id| expr::attr_u32(e, id);
    match e.name.as_str() {
        "immediate" => expr::verdict_chain(e).is_none(),
        // A map's data may be verdicts that jump; plain set lookups have no DREG.
        "lookup" => e.attr(NFTA_LOOKUP_DREG).is_none(),
        "rt" => u(NFTA_RT_KEY) != Some(NFT_RT_TCPMSS),
        "meta" => {
            let key = u(NFTA_META_KEY).unwrap_or(0);
            if e.attr(NFTA_META_SREG).is_some() {
                key != NFT_META_PKTTYPE
            } else {
                !matches!(key, NFT_META_SECPATH | NFT_META_SDIF | NFT_META_SDIFNAME)
            }
        }
        "reject" | "nat" | "masq" | "redir" | "fib" | "tproxy" | "synproxy" | "objref"
        | "socket" | "osf" | "xfrm" | "match" | "target" => false,
        _ => true,
    }
}

fn expression<'t>(
    t: &'t Table,
    e: &Expr,
    cx: &Ctx<'_>,
    level: u32,
    vs: &mut HashMap<&'t str, VState>,
) -> Result<(), i32> {
    let u = |id| expr::attr_u32(e, id);
    let inet_like = matches!(cx.family, NFPROTO_IPV4 | NFPROTO_IPV6 | NFPROTO_INET);
    match e.name.as_str() {
        "immediate" => {
            if let Some(target) = expr::verdict_chain(e) {
                jump(t, target, cx, level, vs)?;
            }
        }
        "lookup" => {
            // Verdict maps: every jump in them is followed.
            let Some(name) = expr::set_ref(e) else {
                return Ok(());
            };
            let Some(s) = t.sets.iter().find(|s| s.name == name) else {
                return Ok(());
            };
            if s.data_type == NFT_DATA_VERDICT && e.attr(NFTA_LOOKUP_DREG).is_some() {
                for el in &s.elems {
                    if el.flags & NFT_SET_ELEM_INTERVAL_END != 0 {
                        continue;
                    }
                    if let Some(ElemData::Verdict {
                        chain: Some(target),
                        ..
                    }) = &el.data
                    {
                        jump(t, target, cx, level, vs)?;
                    }
                }
            }
        }
        "reject" => match cx.family {
            NFPROTO_INET => hooks(cx, IN | FWD | OUT | PRE | INGRESS)?,
            NFPROTO_NETDEV => hooks(cx, 1 << NF_NETDEV_INGRESS)?,
            _ => hooks(cx, IN | FWD | OUT | PRE)?,
        },
        "nat" => {
            dependency(cx, "nat")?;
            match u(NFTA_NAT_TYPE) {
                Some(NFT_NAT_SNAT) => hooks(cx, POST | IN)?,
                Some(NFT_NAT_DNAT) => hooks(cx, PRE | OUT)?,
                _ => {}
            }
        }
        "masq" => {
            dependency(cx, "nat")?;
            hooks(cx, POST)?;
        }
        "redir" => {
            dependency(cx, "nat")?;
            hooks(cx, PRE | OUT)?;
        }
        "fib" => {
            let flags = u(NFTA_FIB_FLAGS).unwrap_or(0);
            let mask = match u(NFTA_FIB_RESULT) {
                Some(NFT_FIB_RESULT_OIF) | Some(NFT_FIB_RESULT_OIFNAME) => PRE | IN | FWD,
                Some(NFT_FIB_RESULT_ADDRTYPE) if flags & u32::from(NFTA_FIB_F_IIF) != 0 => {
                    PRE | IN | FWD
                }
                Some(NFT_FIB_RESULT_ADDRTYPE) if flags & u32::from(NFTA_FIB_F_OIF) != 0 => {
                    OUT | POST | FWD
                }
                Some(NFT_FIB_RESULT_ADDRTYPE) => IN | OUT | FWD | PRE | POST,
                _ => return Err(EINVAL),
            };
            let mask = if cx.family == NFPROTO_INET {
                mask | INGRESS
            } else {
                mask
            };
            hooks(cx, mask)?;
        }
        "tproxy" => hooks(cx, PRE)?,
        "synproxy" => hooks(cx, IN | FWD)?,
        "objref" => {
            // `nft_obj_validate`: the referenced object type's hooks, for a named object
            // or for every object a map can yield.
            let obj_type = match expr::attr_u32(e, NFTA_OBJREF_IMM_TYPE) {
                Some(ty) => Some(ty),
                None => expr::set_ref(e)
                    .and_then(|name| t.sets.iter().find(|s| s.name == name))
                    .map(|s| s.obj_type),
            };
            if obj_type == Some(NFT_OBJECT_SYNPROXY) {
                hooks(cx, IN | FWD)?;
            }
        }
        "socket" => hooks(cx, PRE | IN | OUT)?,
        "osf" => {
            // nf_osf fingerprints IPv4 only: this kernel refuses it in ip6 tables.
            if !matches!(cx.family, NFPROTO_IPV4 | NFPROTO_INET) {
                return Err(EOPNOTSUPP);
            }
            hooks(cx, PRE | IN | FWD)?
        }
        "xfrm" => {
            let dir = e
                .attr(NFTA_XFRM_DIR)
                .and_then(|a| a.value.first().copied())
                .unwrap_or(0);
            hooks(
                cx,
                if dir == 0 {
                    PRE | IN | FWD
                } else {
                    FWD | OUT | POST
                },
            )?;
        }
        "rt" if u(NFTA_RT_KEY) == Some(NFT_RT_TCPMSS) => hooks(cx, FWD | OUT | POST)?,
        "meta" => {
            let key = u(NFTA_META_KEY).unwrap_or(0);
            if e.attr(NFTA_META_SREG).is_some() {
                if key == NFT_META_PKTTYPE {
                    match cx.family {
                        NFPROTO_BRIDGE => hooks(cx, PRE | IN | FWD)?,
                        NFPROTO_NETDEV => hooks(cx, 1 << NF_NETDEV_INGRESS)?,
                        _ if inet_like => hooks(cx, PRE | IN | FWD)?,
                        _ => return Err(EOPNOTSUPP),
                    }
                }
            } else if key == NFT_META_SECPATH && inet_like {
                hooks(cx, PRE | IN | FWD)?;
            } else if (key == NFT_META_SDIF || key == NFT_META_SDIFNAME) && inet_like {
                hooks(cx, IN | FWD)?;
            }
        }
        "match" => compat(e, cx, false)?,
        "target" => compat(e, cx, true)?,
        _ => {}
    }
    Ok(())
}

/// `nft_match_validate` / `nft_target_validate`.
fn compat(e: &Expr, cx: &Ctx<'_>, target: bool) -> Result<(), i32> {
    if !matches!(
        cx.family,
        NFPROTO_IPV4 | NFPROTO_IPV6 | NFPROTO_INET | NFPROTO_BRIDGE | NFPROTO_ARP
    ) {
        return Err(EOPNOTSUPP);
    }
    hooks(cx, PRE | IN | FWD | OUT | POST)?;
    let (name_id, rev_id) = if target {
        (NFTA_TARGET_NAME, NFTA_TARGET_REV)
    } else {
        (NFTA_MATCH_NAME, NFTA_MATCH_REV)
    };
    let name = e.attr(name_id).map_or(&[][..], |a| {
        let end = a
            .value
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(a.value.len());
        &a.value[..end]
    });
    let rev = e
        .attr(rev_id)
        .and_then(|a| a.value.get(..4))
        .map_or(0, |v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
    match crate::xt::find(cx.family, name, rev, target) {
        Some(ext) => crate::xt::validate(ext, cx.family, cx.base.hooknum, &cx.base.chain_type),
        None => Ok(()),
    }
}
