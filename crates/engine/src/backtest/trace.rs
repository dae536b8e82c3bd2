//! The trace reader: a load trace as CSV text becomes a time-ordered step function.
//!
//! Input is CSV with a header row. Timestamps are ISO-8601 (`2014-05-14 01:14:00`,
//! `1998-06-10T15:30:00Z`, `2024-01-01T00:00:00+02:00`; without an offset they are read as UTC)
//! or epoch seconds (integer or decimal); a file without a time column is read with a fixed
//! `step` from a given start. The time column is the one named `timestamp`, `time`, `date`,
//! `datetime`, `period` or `ts`, else the first column when its first value is a time. The value
//! column is `value_column` when given, else the first other column holding a number.
//!
//! What it reports rather than hides: rows out of order (sorted back into place), repeated
//! timestamps (averaged), gaps longer than 1.5 steps (filled with zero or by holding the previous
//! value, as asked), and empty or `NaN` values (treated as missing and filled the same way).
//! The nominal step is the most common interval between consecutive timestamps.
//!
//! Only the parsed times and values are kept (16 bytes a row), never the text: lines can come
//! one at a time from a file being read ([`read_trace_lines`]).
//!
//! Not here: reading the file (the caller passes the text or its lines), or turning values into
//! demand.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

/// How missing points are filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Fill {
    /// No load during a gap.
    #[default]
    Zero,
    /// The last value before a gap continues through it.
    Hold,
}

impl Fill {
    pub fn as_str(self) -> &'static str {
        match self {
            Fill::Zero => "zero",
            Fill::Hold => "hold",
        }
    }
}

/// How to read a trace.
#[derive(Debug, Clone, Default)]
pub struct TraceOptions {
    /// Column holding the load; default: the first numeric column that is not the time.
    pub value_column: Option<String>,
    /// Fixed interval between rows when the file has no time column (it then overrides the
    /// inferred step for gap detection when the file has one).
    pub step: Option<Duration>,
    /// First row's time for a file without a time column; default the Unix epoch.
    pub start: Option<Timestamp>,
    pub fill: Fill,
}

/// One point of the trace: `value` holds from `at_ms` until the next point (or the end).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub value: f64,
}

/// A trace ready for replay, with what the reader noticed on the way.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Time-ordered, distinct timestamps; gap fills already inserted.
    pub points: Vec<Point>,
    /// End of the last point (its timestamp plus one step).
    pub end_ms: i64,
    pub summary: TraceSummary,
}

/// What the reader found, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceSummary {
    pub rows: usize,
    pub time_column: Option<String>,
    pub value_column: String,
    /// `iso-8601`, `epoch-seconds` or `fixed-step`.
    pub time_format: String,
    pub step_secs: f64,
    pub start: Timestamp,
    pub end: Timestamp,
    /// Rows whose timestamp was not after the previous row's.
    pub out_of_order: usize,
    /// Line numbers (1-based, header is line 1) of the first out-of-order rows.
    pub out_of_order_lines: Vec<usize>,
    /// Rows sharing a timestamp with another row (values averaged).
    pub duplicates: usize,
    /// Gaps longer than 1.5 steps.
    pub gap_count: usize,
    /// Missing points over all gaps, in steps.
    pub missing_points: u64,
    /// The longest gaps, in order of time.
    pub gaps: Vec<Gap>,
    /// Rows with an empty or `NaN` value.
    pub empty_values: usize,
    pub fill: Fill,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    /// Last timestamp before the gap.
    pub after: Timestamp,
    /// Next timestamp present.
    pub resumes: Timestamp,
    pub missing_points: u64,
}

/// Why a trace could not be read. Line numbers count the header as line 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("the trace is empty (a header row and at least one data row are needed)")]
    Empty,
    #[error("no value column {wanted:?} (columns: {columns})")]
    NoSuchColumn { wanted: String, columns: String },
    #[error("no numeric value column found (columns: {columns}); name one with --value-column")]
    NoValueColumn { columns: String },
    #[error("no time column found (columns: {columns}); name it timestamp, or give --step for a file without times")]
    NoTimeColumn { columns: String },
    #[error("line {line}: {text:?} is not a timestamp (ISO-8601 or epoch seconds)")]
    BadTime { line: usize, text: String },
    #[error("line {line}: {text:?} is not a number")]
    BadValue { line: usize, text: String },
    #[error("line {line}: expected {expected} fields, found {found}")]
    ShortRow { line: usize, expected: usize, found: usize },
    #[error("step must be positive")]
    ZeroStep,
    #[error("timestamps out of range")]
    OutOfRange,
}

const TIME_NAMES: [&str; 6] = ["timestamp", "time", "date", "datetime", "period", "ts"];
const MAX_LISTED: usize = 20;

fn split_row(line: &str) -> Vec<&str> {
    line.split(',').map(|f| f.trim().trim_matches('"').trim()).collect()
}

/// Parses one timestamp field: epoch seconds, an ISO-8601 instant, a civil date-time (UTC) or a
/// date (midnight UTC). Returns milliseconds and whether it was epoch seconds.
pub fn parse_time(field: &str) -> Option<(i64, bool)> {
    let f = field.trim();
    if f.is_empty() {
        return None;
    }
    let numeric =
        f.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+' || b == b'e' || b == b'E')
            && !f[1..].contains('-');
    if numeric {
        let secs: f64 = f.parse().ok()?;
        let ms = (secs * 1000.0).round();
        if !ms.is_finite() || ms.abs() > 1e17 {
            return None;
        }
        #[allow(clippy::cast_possible_truncation)]
        return Some((ms as i64, true));
    }
    if let Ok(ts) = f.parse::<Timestamp>() {
        return Some((ts.as_millisecond(), false));
    }
    if let Ok(dt) = f.parse::<jiff::civil::DateTime>() {
        return dt.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| (z.timestamp().as_millisecond(), false));
    }
    if let Ok(d) = f.parse::<jiff::civil::Date>() {
        return d.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| (z.timestamp().as_millisecond(), false));
    }
    None
}

/// A value field: `None` for empty or `NaN` (missing), an error for anything else non-numeric.
fn parse_value(field: &str) -> Result<Option<f64>, ()> {
    let f = field.trim();
    if f.is_empty() || f.eq_ignore_ascii_case("nan") || f.eq_ignore_ascii_case("null") {
        return Ok(None);
    }
    match f.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        Ok(_) => Ok(None),
        Err(_) => Err(()),
    }
}

fn ts(ms: i64) -> Result<Timestamp, TraceError> {
    Timestamp::from_millisecond(ms).map_err(|_| TraceError::OutOfRange)
}

/// Reads a trace from CSV text.
pub fn read_trace(text: &str, opts: &TraceOptions) -> Result<Trace, TraceError> {
    read_trace_lines(text.lines(), opts)
}

/// [`read_trace`] from the text's lines (line ends removed) as they come, e.g. from a file
/// being read: no line is kept once parsed, only its time and value (16 bytes a row).
pub fn read_trace_lines<S: AsRef<str>>(
    lines: impl IntoIterator<Item = S>,
    opts: &TraceOptions,
) -> Result<Trace, TraceError> {
    let mut lines = lines.into_iter().enumerate();
    let mut next_line = move || {
        lines.find_map(|(i, l)| {
            let l = l.as_ref().trim_end_matches('\r');
            (!l.trim().is_empty()).then(|| (i + 1, l.to_owned()))
        })
    };
    let (_, header_line) = next_line().ok_or(TraceError::Empty)?;
    let header: Vec<String> =
        split_row(header_line.trim_start_matches('\u{feff}')).into_iter().map(str::to_owned).collect();
    let (first_line, first_text) = next_line().ok_or(TraceError::Empty)?;
    let first = split_row(&first_text);
    let columns = header.join(", ");

    // Time column: by name, else the first column if it holds a time (and no fixed step was given).
    let time_col = header.iter().position(|h| TIME_NAMES.contains(&h.to_ascii_lowercase().as_str())).or_else(|| {
        (opts.step.is_none() && first.first().is_some_and(|f| parse_time(f).is_some() && parse_value(f).is_err()))
            .then_some(0)
    });
    if time_col.is_none() && opts.step.is_none() {
        return Err(TraceError::NoTimeColumn { columns });
    }
    let value_col = match &opts.value_column {
        Some(name) => header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| TraceError::NoSuchColumn { wanted: name.clone(), columns: columns.clone() })?,
        None => (0..header.len())
            .find(|&i| Some(i) != time_col && first.get(i).is_some_and(|f| matches!(parse_value(f), Ok(Some(_)))))
            .ok_or_else(|| TraceError::NoValueColumn { columns: columns.clone() })?,
    };
    let need = value_col.max(time_col.unwrap_or(0)) + 1;

    // Raw rows in file order: (time, value), NaN for a missing value (a value read is finite).
    let mut epoch = false;
    let mut raw: Vec<(i64, f64)> = Vec::new();
    let step_ms = match opts.step {
        Some(s) if s.is_zero() => return Err(TraceError::ZeroStep),
        Some(s) => Some(i64::try_from(s.as_millis()).map_err(|_| TraceError::OutOfRange)?),
        None => None,
    };
    let start_ms = opts.start.map_or(0, Timestamp::as_millisecond);
    let mut empty_values = 0;
    // Out-of-order rows: not after the previous row.
    let mut out_of_order = 0;
    let mut out_of_order_lines = Vec::new();
    let mut row = |k: usize, line: usize, fields: &[&str]| -> Result<(), TraceError> {
        if fields.len() < need {
            return Err(TraceError::ShortRow { line, expected: header.len(), found: fields.len() });
        }
        let at = match (time_col, step_ms) {
            (Some(c), _) => {
                let (ms, is_epoch) =
                    parse_time(fields[c]).ok_or_else(|| TraceError::BadTime { line, text: fields[c].to_owned() })?;
                if k == 0 {
                    epoch = is_epoch;
                }
                ms
            }
            (None, Some(step)) => i64::try_from(k)
                .ok()
                .and_then(|k| k.checked_mul(step))
                .and_then(|o| o.checked_add(start_ms))
                .ok_or(TraceError::OutOfRange)?,
            (None, None) => return Err(TraceError::NoTimeColumn { columns: columns.clone() }),
        };
        let v = parse_value(fields[value_col])
            .map_err(|()| TraceError::BadValue { line, text: fields[value_col].to_owned() })?;
        if v.is_none() {
            empty_values += 1;
        }
        if raw.last().is_some_and(|p| at <= p.0) {
            out_of_order += 1;
            if out_of_order_lines.len() < MAX_LISTED {
                out_of_order_lines.push(line);
            }
        }
        raw.push((at, v.unwrap_or(f64::NAN)));
        Ok(())
    };
    row(0, first_line, &first)?;
    let mut k = 1;
    while let Some((line, text)) = next_line() {
        row(k, line, &split_row(&text))?;
        k += 1;
    }
    let rows = raw.len();

    // Sort (stable: repeated timestamps keep file order) and merge repeated timestamps by
    // averaging the values present, summing in file order from 0.
    if out_of_order > 0 {
        raw.sort_by_key(|r| r.0);
    }
    let mut distinct = 0;
    let mut i = 0;
    while i < raw.len() {
        let at = raw[i].0;
        let (mut sum, mut n) = (0.0, 0u32);
        while i < raw.len() && raw[i].0 == at {
            if !raw[i].1.is_nan() {
                sum += raw[i].1;
                n += 1;
            }
            i += 1;
        }
        raw[distinct] = (at, if n > 0 { sum / f64::from(n) } else { f64::NAN });
        distinct += 1;
    }
    raw.truncate(distinct);
    let duplicates = rows - raw.len();
    let distinct = raw;

    // Nominal step: the given one, else the most common interval.
    let step = match step_ms {
        Some(s) => s,
        None => {
            let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
            for w in distinct.windows(2) {
                *counts.entry(w[1].0 - w[0].0).or_default() += 1;
            }
            counts.into_iter().max_by_key(|&(d, n)| (n, std::cmp::Reverse(d))).map_or(60_000, |(d, _)| d)
        }
    };

    // Fill gaps and missing values.
    let mut points = Vec::with_capacity(distinct.len());
    let mut gaps = Vec::new();
    let (mut gap_count, mut missing_points) = (0, 0u64);
    let mut last_value = 0.0;
    for (i, &(at, v)) in distinct.iter().enumerate() {
        if i > 0 {
            let prev = distinct[i - 1].0;
            let d = at - prev;
            // Saturating: a given step may be close to i64::MAX milliseconds (`--step 50000000d`).
            if d.saturating_mul(2) > step.saturating_mul(3) {
                gap_count += 1;
                #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let missing = ((d as f64 / step as f64).round() as u64).saturating_sub(1).max(1);
                missing_points += missing;
                gaps.push(Gap { after: ts(prev)?, resumes: ts(at)?, missing_points: missing });
                if opts.fill == Fill::Zero {
                    points.push(Point { at_ms: prev.saturating_add(step), value: 0.0 });
                }
            }
        }
        let value = match ((!v.is_nan()).then_some(v), opts.fill) {
            (Some(v), _) => v,
            (None, Fill::Zero) => 0.0,
            (None, Fill::Hold) => last_value,
        };
        last_value = value;
        points.push(Point { at_ms: at, value });
    }
    gaps.sort_by_key(|g| std::cmp::Reverse(g.missing_points));
    gaps.truncate(MAX_LISTED);
    gaps.sort_by_key(|g| g.after);

    let start = points.first().map_or(0, |p| p.at_ms);
    let end_ms = points.last().map_or(0, |p| p.at_ms).saturating_add(step);
    #[allow(clippy::cast_precision_loss)]
    let step_secs = step as f64 / 1000.0;
    let summary = TraceSummary {
        rows,
        time_column: time_col.map(|c| header[c].clone()),
        value_column: header[value_col].clone(),
        time_format: match (time_col, epoch) {
            (None, _) => "fixed-step",
            (Some(_), true) => "epoch-seconds",
            (Some(_), false) => "iso-8601",
        }
        .to_owned(),
        step_secs,
        start: ts(start)?,
        end: ts(end_ms)?,
        out_of_order,
        out_of_order_lines,
        duplicates,
        gap_count,
        missing_points,
        gaps,
        empty_values,
        fill: opts.fill,
    };
    Ok(Trace { points, end_ms, summary })
}

impl Trace {
    /// Largest value of the trace.
    pub fn peak(&self) -> f64 {
        self.points.iter().map(|p| p.value).fold(0.0, f64::max)
    }

    /// Nominal step in milliseconds.
    pub fn step_ms(&self) -> i64 {
        #[allow(clippy::cast_possible_truncation)]
        let s = (self.summary.step_secs * 1000.0).round() as i64;
        s.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Trace {
        read_trace(text, &TraceOptions::default()).unwrap()
    }

    fn values(t: &Trace) -> Vec<(i64, f64)> {
        t.points.iter().map(|p| (p.at_ms / 1000, p.value)).collect()
    }

    #[test]
    fn iso_without_offset_is_utc() {
        let t = read("timestamp,value\n2014-05-14 01:14:00,85.8\n2014-05-14 01:19:00,88.1\n");
        assert_eq!(t.summary.time_format, "iso-8601");
        assert_eq!(t.summary.step_secs, 300.0);
        assert_eq!(t.points[0].at_ms, "2014-05-14T01:14:00Z".parse::<Timestamp>().unwrap().as_millisecond());
        assert_eq!(t.end_ms - t.points[1].at_ms, 300_000);
        assert_eq!(t.summary.value_column, "value");
    }

    #[test]
    fn iso_with_offset_and_t_separator() {
        let t = read("time,load\n2024-01-01T02:00:00+02:00,1\n2024-01-01T00:01:00Z,2\n");
        assert_eq!(values(&t), [(1_704_067_200, 1.0), (1_704_067_260, 2.0)]);
    }

    #[test]
    fn epoch_seconds_and_value_column_by_name() {
        let t = read_trace(
            "ts,cpu,requests\n60,10,100\n120,20,200\n180,30,300\n",
            &TraceOptions { value_column: Some("requests".into()), ..TraceOptions::default() },
        )
        .unwrap();
        assert_eq!(t.summary.time_format, "epoch-seconds");
        assert_eq!(values(&t), [(60, 100.0), (120, 200.0), (180, 300.0)]);
        let e = read_trace("ts,cpu\n60,1\n", &TraceOptions { value_column: Some("mem".into()), ..Default::default() });
        assert_eq!(e.unwrap_err(), TraceError::NoSuchColumn { wanted: "mem".into(), columns: "ts, cpu".into() });
    }

    #[test]
    fn fixed_step_without_time_column() {
        let start: Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
        let opts = TraceOptions { step: Some(Duration::from_secs(30)), start: Some(start), ..Default::default() };
        let t = read_trace("requests\n5\n7\n\n9\n", &opts).unwrap();
        assert_eq!(t.summary.time_format, "fixed-step");
        let s = start.as_second();
        assert_eq!(values(&t), [(s, 5.0), (s + 30, 7.0), (s + 60, 9.0)]);
        assert_eq!(t.end_ms / 1000, s + 90);
        let e = read_trace("requests\n5\n", &TraceOptions::default()).unwrap_err();
        assert!(matches!(e, TraceError::NoTimeColumn { .. }), "{e}");
    }

    #[test]
    fn out_of_order_rows_are_sorted_and_reported() {
        let t = read("timestamp,value\n0,1\n120,3\n60,2\n180,4\n180,6\n");
        assert_eq!(values(&t), [(0, 1.0), (60, 2.0), (120, 3.0), (180, 5.0)]);
        assert_eq!(t.summary.out_of_order, 2);
        assert_eq!(t.summary.out_of_order_lines, [4, 6]);
        assert_eq!(t.summary.duplicates, 1);
        assert_eq!(t.summary.gap_count, 0);
    }

    #[test]
    fn gaps_filled_with_zero_or_hold() {
        let text = "timestamp,value\n0,4\n60,5\n300,6\n360,7\n,\n";
        // The last row has no time: an error naming the line.
        assert_eq!(
            read_trace(text, &TraceOptions::default()).unwrap_err(),
            TraceError::BadTime { line: 6, text: String::new() }
        );
        let text = "timestamp,value\n0,4\n60,5\n300,6\n360,\n";
        let zero = read(text);
        assert_eq!(values(&zero), [(0, 4.0), (60, 5.0), (120, 0.0), (300, 6.0), (360, 0.0)]);
        assert_eq!(zero.summary.gap_count, 1);
        assert_eq!(zero.summary.missing_points, 3);
        assert_eq!(zero.summary.empty_values, 1);
        assert_eq!(zero.summary.gaps[0].after.as_second(), 60);
        let hold = read_trace(text, &TraceOptions { fill: Fill::Hold, ..Default::default() }).unwrap();
        assert_eq!(values(&hold), [(0, 4.0), (60, 5.0), (300, 6.0), (360, 6.0)]);
    }

    #[test]
    fn bad_values_name_their_line() {
        let e = read_trace("timestamp,value\n0,1\n60,abc\n", &TraceOptions::default()).unwrap_err();
        assert_eq!(e, TraceError::BadValue { line: 3, text: "abc".into() });
        assert_eq!(e.to_string(), "line 3: \"abc\" is not a number");
        assert_eq!(read_trace("", &TraceOptions::default()).unwrap_err(), TraceError::Empty);
        assert_eq!(read_trace("timestamp,value\n", &TraceOptions::default()).unwrap_err(), TraceError::Empty);
    }

    #[test]
    fn crlf_bom_and_quotes() {
        let t = read("\u{feff}\"period\",\"count\"\r\n\"1998-04-30 21:30:00\",2\r\n1998-04-30 21:31:00,11");
        assert_eq!(t.summary.time_column.as_deref(), Some("period"));
        assert_eq!(t.points.len(), 2);
        assert_eq!(t.points[1].value, 11.0);
    }
}
