//! Running a package elsewhere: the transports (ssh, local) and the scripts they run, the agent
//! that runs them on an ssh remote without a login shell each time (and its relay here), the frames
//! and preflight answers that come back, one run's session from connecting to its files back, who
//! uses an instance (so that the last one stops it), the checked unpacking of a run's files, the
//! CUDA tools a run uses there (and the compute-sanitizer shipped to it), and the remote doctor's
//! report.

pub mod agent;
pub mod agent_link;
pub mod agent_wire;
pub mod doctor;
pub mod follow;
pub mod frames;
pub mod instance;
pub mod lease;
pub mod preflight;
pub mod relay;
pub mod run;
pub mod scripts;
pub mod session;
pub mod ship;
pub mod slurm;
pub mod ssh;
pub mod tools;
pub mod transport;
pub mod unpack;
