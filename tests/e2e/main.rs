//! Sapa's end-to-end tests: one binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod admin;
mod browser;
mod console;
mod crash;
mod delivery;
mod deploy;
mod distributed;
mod flows;
mod follow_up;
mod health;
mod limits;
mod llm;
mod otp;
mod owner;
mod owner_pages;
mod plugin;
mod process;
mod retrieval;
mod telegram;
mod telemetry;
mod webchat;
mod whatsapp;
mod widget;
