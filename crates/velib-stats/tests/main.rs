//! velib-stats against real inputs.

mod health;
mod real_day;
