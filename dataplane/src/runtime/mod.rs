//! Placeholder replaced below.
pub struct EbpfDataplane;
