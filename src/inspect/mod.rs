//! What a built cubin holds, answered without a GPU: resources, the SASS census, ptxas's
//! advisories, trap-only stubs (`report`, from `ptxas`, `resources` and `sass`), the warnings
//! made from them, the project's expected instructions, and `cargo gpu inspect`'s text.

pub mod expect;
pub mod ptxas;
pub mod report;
pub mod resources;
pub mod sass;
pub mod text;
pub mod warnings;
