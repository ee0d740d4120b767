//! What the benchmark harness (`todo-bench`) and the drills (`todo-drill`) share: the real
//! servers as processes of their own, clients for each way in, and closed-loop load.

pub mod clients;
pub mod load;
pub mod servers;
