//! `rstreams bench`: benchmarks that print medians, for the README and closing notes.

pub(crate) mod checkpoint;
pub(crate) mod engine;
pub(crate) mod nexmark;
pub(crate) mod nexmark_delay;
pub(crate) mod nexmark_files;
pub(crate) mod queue;
pub(crate) mod serve;

/// Median of a list of measurements (the mean of the middle two for an even count).
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
