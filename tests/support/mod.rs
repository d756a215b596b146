#![allow(dead_code)]

pub mod app;
pub mod browser;
pub mod fake_plex;
