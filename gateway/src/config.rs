//! The gateway's settings (flags and environment variables, prefixed `gateway`).

use std::net::SocketAddr;

use clap::Args;

/// Default public address of the gateway.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:8080";

/// Settings of the gateway.
#[derive(Args, Clone, Debug)]
#[group(id = "gateway")]
#[command(next_help_heading = "Gateway")]
pub struct Config {
    /// Public address of the gateway: the one address clients use.
    #[arg(id = "gateway_listen_addr", long = "gateway-listen-addr", env = "GATEWAY_LISTEN_ADDR",
          default_value = DEFAULT_LISTEN_ADDR, value_name = "ADDR")]
    pub listen_addr: SocketAddr,
}
