//! Time-zone names people write that are not what they mean: the tzdb's legacy zones (`EST`,
//! `PST8PDT`, `US/Eastern`, `PRC`) are accepted by the database but are fixed offsets or
//! deprecated links, and abbreviations and city names (`CST`, `PST`, `Beijing`) are not zones
//! at all. Each gets the canonical IANA name to write instead.
//!
//! Not here: deciding whether a name is a zone (jiff's bundled tzdb does that).

/// Legacy names the tzdb still accepts, with the canonical zone and, for a fixed offset, why it
/// is wrong for a city (no daylight saving time).
const LEGACY: &[(&str, &str, Option<&str>)] = &[
    ("EST", "America/New_York", Some("a fixed UTC-5 with no daylight saving time")),
    ("MST", "America/Denver", Some("a fixed UTC-7 with no daylight saving time; America/Phoenix for Arizona")),
    ("HST", "Pacific/Honolulu", None),
    ("EST5EDT", "America/New_York", None),
    ("CST6CDT", "America/Chicago", None),
    ("MST7MDT", "America/Denver", None),
    ("PST8PDT", "America/Los_Angeles", None),
    ("CET", "Europe/Paris", Some("Central European Time without a city: e.g. Europe/Berlin")),
    ("MET", "Europe/Paris", None),
    ("EET", "Europe/Athens", None),
    ("WET", "Europe/Lisbon", None),
    ("US/Eastern", "America/New_York", None),
    ("US/Central", "America/Chicago", None),
    ("US/Mountain", "America/Denver", None),
    ("US/Pacific", "America/Los_Angeles", None),
    ("US/Alaska", "America/Anchorage", None),
    ("US/Hawaii", "Pacific/Honolulu", None),
    ("US/Arizona", "America/Phoenix", None),
    ("PRC", "Asia/Shanghai", None),
    ("ROC", "Asia/Taipei", None),
    ("ROK", "Asia/Seoul", None),
    ("Japan", "Asia/Tokyo", None),
    ("Singapore", "Asia/Singapore", None),
    ("Hongkong", "Asia/Hong_Kong", None),
    ("Asia/Calcutta", "Asia/Kolkata", None),
    ("Asia/Saigon", "Asia/Ho_Chi_Minh", None),
    ("Asia/Chongqing", "Asia/Shanghai", None),
    ("Asia/Harbin", "Asia/Shanghai", None),
    ("GB", "Europe/London", None),
    ("Eire", "Europe/Dublin", None),
    ("Europe/Kiev", "Europe/Kyiv", None),
    ("Brazil/East", "America/Sao_Paulo", None),
    ("Australia/ACT", "Australia/Sydney", None),
    ("Australia/NSW", "Australia/Sydney", None),
];

/// Abbreviations and city names that are not zones.
const NOT_ZONES: &[(&str, &str)] = &[
    ("CST", "it is ambiguous (US Central or China Standard Time): write America/Chicago or Asia/Shanghai"),
    ("IST", "it is ambiguous (India, Israel or Ireland): write Asia/Kolkata, Asia/Jerusalem or Europe/Dublin"),
    ("BST", "it is ambiguous (British Summer Time or Bangladesh): write Europe/London or Asia/Dhaka"),
    ("EDT", "write America/New_York"),
    ("CDT", "write America/Chicago"),
    ("MDT", "write America/Denver"),
    ("PST", "write America/Los_Angeles"),
    ("PDT", "write America/Los_Angeles"),
    ("AKST", "write America/Anchorage"),
    ("JST", "write Asia/Tokyo"),
    ("KST", "write Asia/Seoul"),
    ("SGT", "write Asia/Singapore"),
    ("HKT", "write Asia/Hong_Kong"),
    ("CEST", "write e.g. Europe/Berlin or Europe/Paris"),
    ("AEST", "write Australia/Sydney (or Australia/Brisbane, which has no daylight saving time)"),
    ("AEDT", "write Australia/Sydney"),
    ("Beijing", "write Asia/Shanghai"),
    ("China", "write Asia/Shanghai"),
    ("Shenzhen", "write Asia/Shanghai"),
    ("Guangzhou", "write Asia/Shanghai"),
    ("Hangzhou", "write Asia/Shanghai"),
    ("New York", "write America/New_York"),
    ("NewYork", "write America/New_York"),
    ("San Francisco", "write America/Los_Angeles"),
    ("Seattle", "write America/Los_Angeles"),
    ("London", "write Europe/London"),
    ("Tokyo", "write Asia/Tokyo"),
    ("Seoul", "write Asia/Seoul"),
    ("Mumbai", "write Asia/Kolkata"),
    ("Delhi", "write Asia/Kolkata"),
    ("India", "write Asia/Kolkata"),
];

/// For a legacy name the tzdb accepts: the warning's text.
pub(super) fn legacy(name: &str) -> Option<String> {
    let (_, canonical, why) = LEGACY.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(name))?;
    Some(match why {
        Some(why) if why.starts_with("a fixed") && *canonical == "America/New_York" => {
            format!("{name:?} is a legacy zone ({why}): write {canonical} for New York's local time")
        }
        Some(why) => format!("{name:?} is a legacy zone ({why}): write {canonical}"),
        None => format!("{name:?} is a legacy zone: write {canonical}"),
    })
}

/// For a name the tzdb rejects: what to write instead, when we know.
pub(super) fn hint(name: &str) -> Option<&'static str> {
    let key = name.trim();
    NOT_ZONES.iter().find(|(n, _)| n.eq_ignore_ascii_case(key)).map(|(_, h)| *h)
}
