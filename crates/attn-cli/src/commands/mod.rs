//! One module per `attn` command: its arguments (a clap `Args` struct) and what it does.

pub(crate) mod attribute;
pub(crate) mod bench;
pub(crate) mod circuits;
pub(crate) mod compare;
pub(crate) mod eval;
pub(crate) mod generate;
pub(crate) mod heads;
pub(crate) mod importance;
pub(crate) mod inspect;
pub(crate) mod lens;
pub(crate) mod lesson;
pub(crate) mod patch;
pub(crate) mod plays;
pub(crate) mod qk;
pub(crate) mod roles;
pub(crate) mod run;
pub(crate) mod steer;
pub(crate) mod train;
