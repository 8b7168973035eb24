//! The handlers of the management API, one module per registry area.

pub mod admin;
pub mod gateway;
pub mod groups;
pub mod members;
pub mod monitoring;
pub mod public;
pub mod registrations;
pub mod services;
pub mod subscriptions;
