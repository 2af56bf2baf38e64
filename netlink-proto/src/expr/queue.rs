//! `queue`: Hands the packet to userspace through nfqueue.

use super::expr_struct;
use crate::consts::*;
use crate::data::Register;
use crate::typed::{attr_enum, getters};

attr_enum! {
    /// `queue` expression attributes.
    pub enum QueueAttr {
        Num(u16) = NFTA_QUEUE_NUM,
        Total(u16) = NFTA_QUEUE_TOTAL,
        Flags(u16) = NFTA_QUEUE_FLAGS,
        SregQnum(Register) = NFTA_QUEUE_SREG_QNUM,
    }
}

expr_struct! {
    /// The `queue` expression.
    pub struct Queue(QueueAttr) = "queue";
}

impl Queue {
    getters! { QueueAttr {
        num: Num => copy<u16>,
        total: Total => copy<u16>,
        flags: Flags => copy<u16>,
        sreg_qnum: SregQnum => copy<Register>,
    } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::testutil::elem;
    use crate::expr::Expr;

    #[test]
    fn queue_number_from_register() {
        // nft add rule arp test-arp output 'queue to jhash oif . meta mark mod 32'
        let e = elem("1c0001800a00010071756575650000000c0002800800040000000001");
        let Expr::Queue(q) = &e.expr else { panic!() };
        assert_eq!((q.sreg_qnum(), q.num()), (Some(Register::Reg1), None));
    }
}
