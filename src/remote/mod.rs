//! Running a package elsewhere: the transports (ssh, local), the remote protocol's scripts, who
//! uses an instance (so that the last one stops it) and the checked unpacking of what comes back.

pub mod follow;
pub mod instance;
pub mod lease;
pub mod protocol;
pub mod ssh;
pub mod transport;
pub mod unpack;
