//! Full-screen terminal views (ratatui): `hoop approve`'s live view of the
//! calls waiting for a decision.

pub mod approve;
