//! `[schedule]`: when `dsproc schedule` rebuilds a job, and what it does about
//! missed ticks, failures and a training run's deadline.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// `[schedule]`: when `dsproc schedule` runs the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Cron line: 5 fields (minute hour day-of-month month day-of-week; `*`,
    /// lists, ranges, steps, names), an optional 6th field for seconds (last, as
    /// croniter writes it; for tests), or `@hourly`, `@daily`, `@weekly`,
    /// `@monthly`, `@yearly`. Day-of-month and day-of-week both restricted: either
    /// matches (Vixie cron).
    pub cron: String,
    /// IANA time zone the cron line is read in (e.g. `Europe/Berlin`). As
    /// croniter: a time inside a DST gap fires at the first instant after the
    /// gap; a repeated (fall-back) hour fires in both of its passes.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Ticks missed while no scheduler ran (or while a run overran): `latest`
    /// (default: run once, for the latest), `all` (run each, oldest first),
    /// `none` (skip them; wait for the next tick).
    #[serde(default)]
    pub catch_up: CatchUp,
    /// A run still going after this long (e.g. `2h`) is stopped and counts as
    /// failed (exit 1, retried).
    #[serde(default)]
    pub max_runtime: Option<String>,
    /// Retries of a run that failed with exit 1 (never for 2 = spec error or
    /// 3 = data rejected by checks).
    #[serde(default)]
    pub retries: u32,
    /// Wait before the first retry (e.g. `30s`); doubled for each further one.
    #[serde(default = "default_backoff")]
    pub retry_backoff: String,
    /// Longest wait between retries.
    #[serde(default = "default_backoff_max")]
    pub retry_backoff_max: String,
    /// When a training run needs a good version: a cron line (same time zone) or
    /// an RFC 3339 instant. At each such moment the scheduler warns, and notifies
    /// `ready_by_missed`, when no run committed a version (or found the current
    /// one up to date) since the previous one.
    #[serde(default)]
    pub ready_by: Option<String>,
    /// Webhook URLs (`http://`) that receive a JSON event (`success`, `failure`,
    /// `rejected`, `ready_by_missed`) as a POST.
    #[serde(default)]
    pub notify: Vec<String>,
    /// Lease of the run lock in the dataset root (`_runs/lock.json`), renewed by
    /// the running scheduler every third of it: a dead scheduler's lock expires
    /// after this long.
    #[serde(default = "default_lease")]
    pub lease: String,
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_backoff() -> String {
    "30s".into()
}
fn default_backoff_max() -> String {
    "10m".into()
}
fn default_lease() -> String {
    "60s".into()
}

/// `schedule.catch_up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Run once, for the latest missed tick.
    #[default]
    Latest,
    /// Run every missed tick, oldest first.
    All,
    /// Skip missed ticks.
    None,
}

/// A parsed cron line in its time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: croner::Cron,
    pub tz: chrono_tz::Tz,
    pub text: String,
}

impl CronSchedule {
    /// Parses `expr` (see [`ScheduleSpec::cron`]) in the IANA zone `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<Self, String> {
        let tz: chrono_tz::Tz =
            tz.parse().map_err(|_| format!("unknown time zone {tz:?} (use an IANA name such as Europe/Berlin)"))?;
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let pattern = match fields.len() {
            1 if fields[0].starts_with('@') => fields[0].to_string(),
            5 => fields.join(" "),
            // croniter's 6th field is the seconds; croner wants them first
            6 => format!("{} {}", fields[5], fields[..5].join(" ")),
            n => {
                return Err(format!(
                    "cron {expr:?}: {n} fields; give 5 (minute hour day-of-month month day-of-week), 6 (… seconds) or an @alias"
                ))
            }
        };
        let cron =
            croner::Cron::new(&pattern).with_seconds_optional().parse().map_err(|e| format!("cron {expr:?}: {e}"))?;
        Ok(Self { cron, tz, text: expr.to_string() })
    }

    /// The first fire time strictly after `t`: the first instant whose wall-clock
    /// time in the zone matches (as croniter: a repeated hour fires in both of
    /// its passes; a time inside a DST gap fires at the first instant after it).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        use chrono::Offset;
        let first = self.cron.find_next_occurrence(&t.with_timezone(&self.tz), false).ok()?.with_timezone(&Utc);
        // croner maps an ambiguous wall time to its first instant: the second pass
        // of a repeated hour is found by matching in the later fixed offset, kept
        // when the zone really has that offset then.
        let offset_at = |u: DateTime<Utc>| self.tz.offset_from_utc_datetime(&u.naive_utc()).fix();
        let mut best = first;
        let mut offsets = vec![offset_at(t), offset_at(first)];
        offsets.dedup();
        for o in offsets {
            let mut at = t.with_timezone(&o);
            for _ in 0..1000 {
                let Ok(c) = self.cron.find_next_occurrence(&at, false) else { break };
                let u = c.with_timezone(&Utc);
                if u >= best {
                    break;
                }
                if offset_at(u) == o {
                    best = u;
                    break;
                }
                at = c;
            }
        }
        Some(best)
    }

    /// The next `n` fire times after `t`, in the schedule's zone.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<chrono_tz::Tz>> {
        let mut out = Vec::with_capacity(n);
        let mut at = t;
        while out.len() < n {
            let Some(next) = self.next_after(at) else { break };
            out.push(next.with_timezone(&self.tz));
            at = next;
        }
        out
    }

    /// Fire times in `(after, until]`, oldest first, at most `cap`.
    pub fn between(&self, after: DateTime<Utc>, until: DateTime<Utc>, cap: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut at = after;
        while let Some(next) = self.next_after(at) {
            if next > until || out.len() >= cap {
                break;
            }
            out.push(next);
            at = next;
        }
        out
    }
}

/// `ready_by`: a cron line or one instant.
#[derive(Debug, Clone)]
pub enum ReadyBy {
    Cron(Box<CronSchedule>),
    At(DateTime<Utc>),
}

impl ReadyBy {
    pub fn parse(s: &str, tz: &str) -> Result<Self, String> {
        if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
            return Ok(Self::At(t.with_timezone(&Utc)));
        }
        CronSchedule::parse(s, tz)
            .map(|c| Self::Cron(Box::new(c)))
            .map_err(|e| format!("{e} (or give an RFC 3339 time)"))
    }
    /// The first deadline strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Cron(c) => c.next_after(t),
            Self::At(at) => (*at > t).then_some(*at),
        }
    }
    /// The last deadline at or before `t`.
    pub fn previous(&self, t: DateTime<Utc>, before: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Cron(c) => c.between(before, t, 100_000).last().copied(),
            Self::At(at) => (*at <= t).then_some(*at),
        }
    }
}

/// A checked `[schedule]`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub spec: ScheduleSpec,
    pub cron: CronSchedule,
    pub ready_by: Option<ReadyBy>,
    pub max_runtime: Option<std::time::Duration>,
    pub backoff: std::time::Duration,
    pub backoff_max: std::time::Duration,
    pub lease: std::time::Duration,
}

impl ScheduleSpec {
    /// Checks every value; `Err((key, message))` names the key.
    pub fn check(&self) -> Result<Schedule, (String, String)> {
        let cron = CronSchedule::parse(&self.cron, &self.timezone).map_err(|m| {
            let key = if m.starts_with("unknown time zone") { "timezone" } else { "cron" };
            (key.to_string(), m)
        })?;
        let secs = |key: &str, v: &str| {
            dsproc_common::size::parse_duration_secs(v)
                .map(std::time::Duration::from_secs)
                .map_err(|e| (key.to_string(), e.to_string()))
        };
        let max_runtime = self.max_runtime.as_deref().map(|v| secs("max_runtime", v)).transpose()?;
        let backoff = secs("retry_backoff", &self.retry_backoff)?;
        let backoff_max = secs("retry_backoff_max", &self.retry_backoff_max)?;
        let lease = secs("lease", &self.lease)?;
        if lease.as_secs() < 3 {
            return Err(("lease".into(), "must be at least 3s".into()));
        }
        let ready_by = self
            .ready_by
            .as_deref()
            .map(|r| ReadyBy::parse(r, &self.timezone))
            .transpose()
            .map_err(|m| ("ready_by".to_string(), m))?;
        for url in &self.notify {
            if !url.starts_with("http://") {
                return Err((
                    "notify".into(),
                    format!("{url:?}: only http:// webhook URLs are supported (use a local relay for https)"),
                ));
            }
        }
        Ok(Schedule { spec: self.clone(), cron, ready_by, max_runtime, backoff, backoff_max, lease })
    }
}

impl Schedule {
    /// The wait before retry `n` (1-based): `retry_backoff · 2^(n-1)`, capped.
    pub fn backoff(&self, n: u32) -> std::time::Duration {
        let factor = 1u64.checked_shl(n.saturating_sub(1)).unwrap_or(u64::MAX);
        let secs = self.backoff.as_secs_f64() * factor as f64;
        std::time::Duration::from_secs_f64(secs.min(self.backoff_max.as_secs_f64()))
    }
}

/// Parses an RFC 3339 time or `now`.
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    if s == "now" {
        return Ok(Utc::now());
    }
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).map_err(|e| format!("{s:?}: {e} (use RFC 3339)"))
}

/// A local time in `tz` as UTC (the first of an ambiguous pair), for tests.
pub fn local(tz: &chrono_tz::Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> Option<DateTime<Utc>> {
    tz.with_ymd_and_hms(y, m, d, h, min, 0).earliest().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_fields_put_the_seconds_last_and_backoff_doubles_up_to_its_cap() {
        let c = CronSchedule::parse("* * * * * */2", "UTC").unwrap();
        let t = DateTime::parse_from_rfc3339("2026-01-01T00:00:01Z").unwrap().with_timezone(&Utc);
        assert_eq!(c.next_after(t).unwrap().to_rfc3339(), "2026-01-01T00:00:02+00:00");
        assert!(CronSchedule::parse("* * *", "UTC").is_err());
        assert!(CronSchedule::parse("* * * * *", "Mars/Olympus").unwrap_err().contains("time zone"));
        let spec = ScheduleSpec {
            cron: "@hourly".into(),
            timezone: "UTC".into(),
            catch_up: CatchUp::Latest,
            max_runtime: None,
            retries: 3,
            retry_backoff: "2s".into(),
            retry_backoff_max: "5s".into(),
            ready_by: None,
            notify: vec![],
            lease: "60s".into(),
        };
        let s = spec.check().unwrap();
        let b: Vec<u64> = (1..=4).map(|n| s.backoff(n).as_secs()).collect();
        assert_eq!(b, [2, 4, 5, 5]);
    }
}
