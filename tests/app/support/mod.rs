pub mod app;
pub mod browser;
pub mod cluster;
pub mod db;

pub use app::{between, html_text, Client, TestApp, PASSWORD};
pub use db::{Template, TestDatabase};
pub mod server;
pub mod smtp;
pub mod uploads;
