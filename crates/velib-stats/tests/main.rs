//! velib-stats against real inputs.

mod real_day;
