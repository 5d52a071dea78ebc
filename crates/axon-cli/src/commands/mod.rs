//! One module per subcommand.

pub mod cancel;
pub mod cortex;
pub mod episodes;
pub mod plan;
pub mod run;
pub mod runs;
pub mod schema;
pub mod validate;
