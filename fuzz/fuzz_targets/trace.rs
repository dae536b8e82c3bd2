//! Fuzzes the trace reader: any text under any options must give a trace or an error, never a
//! panic, and a trace that comes back must be time-ordered.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vmscaler_engine::backtest::trace::{Fill, TraceOptions, read_trace};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the options, the rest is the file.
    let Some((&flags, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let opts = TraceOptions {
        value_column: (flags & 1 != 0).then(|| "value".to_owned()),
        step: match (flags >> 1) & 3 {
            0 => None,
            1 => Some(Duration::from_secs(60)),
            2 => Some(Duration::from_millis(1)),
            // Fits in i64 milliseconds, but not three times over.
            _ => Some(Duration::from_millis(u64::MAX / 4)),
        },
        start: match (flags >> 3) & 3 {
            0 => None,
            1 => Some(jiff::Timestamp::MAX),
            2 => Some(jiff::Timestamp::MIN),
            _ => Some(jiff::Timestamp::constant(1_795_000_000, 0)),
        },
        fill: if flags & 32 != 0 { Fill::Hold } else { Fill::Zero },
    };
    if let Ok(trace) = read_trace(&text, &opts) {
        assert!(trace.points.windows(2).all(|w| w[0].at_ms < w[1].at_ms), "points out of order");
        let _ = trace.peak();
        let _ = trace.step_ms();
    }
});
