//! What a scrub removed: counts per rule and field path, never the values.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};

/// What one scrub (or several, [merged](Report::merge)) removed: how many matches each rule
/// redacted at each field path. It never holds the values themselves.
///
/// Field paths are dotted keys as they read *after* scrubbing, with `[]` for any array index
/// (`exception.values[].stacktrace.frames[].abs_path`); `{key}` marks a map key that was
/// rewritten (`extra{key}`), and the empty path is the text given to
/// [`Scrubber::scrub_text`](crate::Scrubber::scrub_text).
///
/// ```
/// use consentry_scrubbers::Scrubber;
/// use serde_json::json;
///
/// let scrubber = Scrubber::builder().build()?;
/// let mut event = json!({"user": {"email": "bob@example.com"}, "message": "from 10.1.2.3"});
/// let report = scrubber.scrub_value(&mut event)?;
/// assert_eq!(report.total(), 2);
/// let entries: Vec<_> = report.iter().map(|e| (e.rule, e.path, e.count)).collect();
/// assert_eq!(entries, [("email", "user.email", 1), ("ipv4", "message", 1)]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    // Nested rather than keyed by a (rule, path) pair so lookups need no owned key.
    counts: BTreeMap<String, BTreeMap<String, u64>>,
}

/// One line of a [`Report`]: a rule, a field path, and how many matches it redacted there.
///
/// ```
/// let report = consentry_scrubbers::Report::new();
/// assert!(report.iter().next().is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReportEntry<'a> {
    /// The rule's name, e.g. `email`.
    pub rule: &'a str,
    /// The field path, e.g. `exception.values[].value`.
    pub path: &'a str,
    /// How many matches were redacted.
    pub count: u64,
}

impl Report {
    /// An empty report.
    ///
    /// ```
    /// assert!(consentry_scrubbers::Report::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Report::default()
    }

    /// Whether nothing was scrubbed.
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().build()?;
    /// assert!(scrubber.scrub_text("nothing to see")?.1.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// How many matches were redacted in all.
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().build()?;
    /// assert_eq!(scrubber.scrub_text("a@example.com, b@example.com")?.1.total(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn total(&self) -> u64 {
        self.counts.values().flat_map(BTreeMap::values).sum()
    }

    /// How many matches one rule redacted, over all paths.
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().build()?;
    /// let (_, report) = scrubber.scrub_text("a@example.com at 10.0.0.7")?;
    /// assert_eq!(report.count_for_rule("email"), 1);
    /// assert_eq!(report.count_for_rule("iban"), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn count_for_rule(&self, rule: &str) -> u64 {
        self.counts
            .get(rule)
            .map_or(0, |paths| paths.values().sum())
    }

    /// The entries, ordered by rule name, then path.
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().build()?;
    /// let (_, report) = scrubber.scrub_text("mail a@example.com")?;
    /// let entry = report.iter().next().unwrap();
    /// assert_eq!((entry.rule, entry.path, entry.count), ("email", "", 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = ReportEntry<'_>> + '_ {
        self.counts.iter().flat_map(|(rule, paths)| {
            paths
                .iter()
                .map(move |(path, &count)| ReportEntry { rule, path, count })
        })
    }

    /// Adds another report's counts to this one (e.g. to sum up a batch of events).
    /// Takes the other report by value or by reference.
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().build()?;
    /// let mut total = consentry_scrubbers::Report::new();
    /// for line in ["a@example.com", "b@example.com"] {
    ///     let (_, report) = scrubber.scrub_text(line)?;
    ///     total.merge(&report);
    ///     total.merge(report);
    /// }
    /// assert_eq!(total.total(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn merge(&mut self, other: impl Borrow<Report>) {
        for entry in other.borrow().iter() {
            self.add(entry.rule, entry.path, entry.count);
        }
    }

    pub(crate) fn add(&mut self, rule: &str, path: &str, count: u64) {
        if count == 0 {
            return;
        }
        let paths = match self.counts.get_mut(rule) {
            Some(paths) => paths,
            None => self.counts.entry(rule.to_owned()).or_default(),
        };
        match paths.get_mut(path) {
            Some(existing) => *existing = existing.saturating_add(count),
            None => {
                paths.insert(path.to_owned(), count);
            }
        }
    }
}

impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entries: Vec<ReportEntry<'_>> = self.iter().collect();
        let mut state = serializer.serialize_struct("Report", 2)?;
        state.serialize_field("total", &self.total())?;
        state.serialize_field("entries", &entries)?;
        state.end()
    }
}

#[derive(Deserialize)]
struct OwnedEntry {
    rule: String,
    path: String,
    count: u64,
}

#[derive(Deserialize)]
struct OwnedReport {
    entries: Vec<OwnedEntry>,
}

impl<'de> Deserialize<'de> for Report {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let owned = OwnedReport::deserialize(deserializer)?;
        let mut report = Report::new();
        for entry in owned.entries {
            report.add(&entry.rule, &entry.path, entry.count);
        }
        Ok(report)
    }
}

impl fmt::Display for Report {
    /// A readable summary, one line per rule with its paths, e.g.
    ///
    /// ```text
    /// scrubbed 3 values
    ///   email      2  message, user.email
    ///   home-path  1  exception.values[].stacktrace.frames[].abs_path
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "nothing scrubbed");
        }
        let total = self.total();
        write!(
            f,
            "scrubbed {total} value{}",
            if total == 1 { "" } else { "s" }
        )?;
        // Per rule: its total, and its paths with their counts.
        type PerRule<'a> = (u64, Vec<(&'a str, u64)>);
        let mut by_rule: BTreeMap<&str, PerRule<'_>> = BTreeMap::new();
        for entry in self.iter() {
            let slot = by_rule.entry(entry.rule).or_default();
            slot.0 = slot.0.saturating_add(entry.count);
            slot.1.push((entry.path, entry.count));
        }
        let name_width = by_rule.keys().map(|name| name.len()).max().unwrap_or(0);
        let count_width = by_rule
            .values()
            .map(|(count, _)| count.to_string().len())
            .max()
            .unwrap_or(1);
        for (rule, (count, paths)) in &by_rule {
            write!(f, "\n  {rule:<name_width$}  {count:>count_width$}  ")?;
            for (i, (path, n)) in paths.iter().enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                let path = if path.is_empty() { "(text)" } else { path };
                if paths.len() > 1 {
                    write!(f, "{path} ({n})")?;
                } else {
                    write!(f, "{path}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_serde() {
        let mut report = Report::new();
        assert_eq!(report.to_string(), "nothing scrubbed");
        report.add("email", "user.email", 1);
        report.add("email", "message", 2);
        report.add(
            "home-path",
            "exception.values[].stacktrace.frames[].abs_path",
            5,
        );
        report.add("email", "message", 1);
        assert_eq!(
            report.to_string(),
            "scrubbed 9 values\n  email      4  message (3), user.email (1)\n  \
             home-path  5  exception.values[].stacktrace.frames[].abs_path"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["total"], 9);
        assert_eq!(json["entries"][0]["path"], "message");
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }
}
