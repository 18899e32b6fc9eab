//! Helpers shared by the integration tests: each test file declares `mod support;` and uses
//! the parts it needs (so some are unused in any one test binary).
#![allow(dead_code)]

pub mod app_server;
pub mod audit;
pub mod redis_server;
