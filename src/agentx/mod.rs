//! Agentic session replay (`--scenario agentx`): Weka coding-agent traces, their
//! subagent trees and the theoretical prefix cache, as AIPerf 0.12.0 replays them
//! for evalscope 1.14.1's AgentX scenario.

pub mod chain_split;
pub mod chains;
mod credit;
pub mod numpy_rng;
pub mod plan;
pub mod replay;
pub mod summary;
pub mod synth;
mod timer;
pub mod trace;
pub mod tstar;
mod warmup;

#[cfg(test)]
mod replay_tests;
#[cfg(test)]
mod tests;
