//! A/B experiments of prompts and models.
//!
//! So far this crate holds the piece every other part of experiments builds on:
//! deterministic user-to-variant [`assignment`], computed exactly as GrowthBook's SDKs
//! compute it, so that any client in any language can assign users locally and agree
//! with the server.

pub mod assignment;
