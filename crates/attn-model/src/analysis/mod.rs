//! The analyses, each over any [`Engine`](crate::Engine) (the CPU engine here, the GPU engine
//! in attn-gpu): the cost of a change (`metrics`), head importance (`importance`), generation
//! (`generate`), head roles (`roles`), the interpretability tools on the hook points (`lens`,
//! `attribution`, `patching`, `qk`), steering (`steer`), the weights' QK/OV circuits (`circuits`), the KV cache against
//! quality sweep (`tradeoff`), and maps pooled for display (`thumbnail`).

pub mod attribution;
pub mod circuits;
pub mod corpus;
pub mod generate;
pub mod importance;
pub mod lens;
pub mod metrics;
pub mod patching;
pub mod qk;
pub mod roles;
pub mod steer;
pub mod thumbnail;
pub mod tradeoff;
