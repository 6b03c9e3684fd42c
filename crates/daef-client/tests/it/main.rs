//! The client against a real gateway: the HTTP API (daef-http over the memory adapters) served
//! on a loopback port, so every call crosses a socket as it does in production.

mod admin;
mod errors;
mod events;
mod gateway;
mod jobs;
mod tls;
mod workers;
