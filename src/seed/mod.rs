//! `cpis seed`: reference data, and with `--demo` the synthetic demo population.

pub mod demo;
pub mod reference;
