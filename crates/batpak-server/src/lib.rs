//! `batpak serve`: a batpak store over HTTP/JSON under `/v1`, with live streams
//! (Server-Sent Events), durable cursors, bearer tokens with per-scope grants,
//! Prometheus metrics and graceful shutdown.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = batpak::Store::open("./events")?;
//! let server = batpak_server::Server::builder(store)
//!     .bind("127.0.0.1:2113".parse()?)
//!     .await?;
//! server.serve().await?; // until SIGTERM or SIGINT, then drains and closes the store
//! # Ok(()) }
//! ```
//!
//! The library stays free of any async runtime: every store call runs on tokio's
//! blocking pool through [`AsyncStore`], which an application can use on its own.

mod api;
mod auth;
mod console;
mod contract;
mod error;
mod facade;
mod kurrent;
mod limits;
mod metrics;
mod params;
mod registry;
mod server;
mod tls;
mod wire;

pub use auth::{generate_token, token_hash, Caller, Grant, Permission, TokenEntry, TokensFile};
pub use contract::openapi_json;
pub use error::ApiError;
pub use facade::{AsyncStore, Follow, FollowError};
pub use limits::Limits;
pub use registry::AppendContext;
pub use server::{ServeError, Server, ServerBuilder};
pub use tls::TlsConfig;
pub use wire::PRINCIPAL_KEY;
