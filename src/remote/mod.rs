//! Running a package elsewhere: the transports (ssh, local), the remote protocol's scripts, the
//! quoting of remote shell words and the checked unpacking of what comes back.

pub mod protocol;
pub mod quote;
pub mod ssh;
pub mod transport;
pub mod unpack;
