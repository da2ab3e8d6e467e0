//! One retry policy for every REST client: exponential backoff with jitter, a server's
//! `Retry-After` honoured (capped at the largest delay), bounded by a number of retries and by a
//! total time budget.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

/// What an error says about retrying the request that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Permanent: retrying cannot help (most 4xx, decoding errors, local I/O).
    Never,
    /// Transient; `Some(d)` when the server asked for a delay (`Retry-After`).
    After(Option<Duration>),
}

/// Errors that know whether the request that caused them may be retried.
pub trait Retryable {
    /// Whether, and after what server-requested delay, to retry.
    fn retry(&self) -> Retry;
}

/// Retry settings. Serialised with human-readable durations:
/// `{ max_retries = 5, min_delay = "500ms", max_delay = "20s", jitter = 0.25, max_total = "2m" }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// First delay.
    #[serde(with = "humantime_serde")]
    pub min_delay: Duration,
    /// Largest delay (a longer `Retry-After` is capped to it).
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Relative jitter applied to each computed delay (0.25 = ±25%).
    pub jitter: f64,
    /// Total time budget, first attempt included; no retry starts past it.
    #[serde(with = "humantime_serde")]
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            jitter: 0.25,
            max_total: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// Checks the values (non-negative finite jitter below 1, min <= max).
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(format!("jitter {} must be in [0, 1)", self.jitter));
        }
        if self.min_delay > self.max_delay {
            return Err(format!(
                "min_delay {:?} is larger than max_delay {:?}",
                self.min_delay, self.max_delay
            ));
        }
        Ok(())
    }

    /// The delay before retry number `retry` (0-based), honouring a server's `Retry-After`.
    pub fn delay(&self, retry: usize, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_delay);
        }
        let base = self.min_delay.as_secs_f64() * 2f64.powi(retry.min(30) as i32);
        let base = base.min(self.max_delay.as_secs_f64());
        let jitter = if self.jitter > 0.0 {
            rand::rng().random_range(-self.jitter..=self.jitter)
        } else {
            0.0
        };
        Duration::from_secs_f64((base * (1.0 + jitter)).max(0.0))
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the policy gives up. A permanent
    /// error, or a transient one when no retry was allowed at all, is returned as is; when
    /// retries ran out, `gave_up(last error, attempts, elapsed)` builds the error returned.
    pub async fn run<T, E, F, Fut, G>(&self, mut attempt: F, gave_up: G) -> Result<T, E>
    where
        E: Retryable + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        G: FnOnce(E, usize, Duration) -> E,
    {
        let started = Instant::now();
        let mut retries = 0;
        loop {
            let e = match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let Retry::After(after) = e.retry() else {
                return Err(e);
            };
            let delay = self.delay(retries, after);
            let out_of_budget = started.elapsed() + delay > self.max_total;
            if retries >= self.max_retries || out_of_budget {
                if retries == 0 {
                    return Err(e);
                }
                return Err(gave_up(e, retries + 1, started.elapsed()));
            }
            tracing::warn!("{e}; retry {} in {delay:.1?}", retries + 1);
            tokio::time::sleep(delay).await;
            retries += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(Retry);
    impl Retryable for E {
        fn retry(&self) -> Retry {
            self.0
        }
    }
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let cfg = RetryPolicy {
            min_delay: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for retry in 0..8 {
            let d = cfg.delay(retry, None).as_secs_f64();
            let base = (2f64.powi(retry as i32)).min(20.0);
            assert!(
                d >= base * 0.75 - 1e-9 && d <= base * 1.25 + 1e-9,
                "retry {retry}: {d}"
            );
        }
        assert_eq!(
            cfg.delay(0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            cfg.delay(0, Some(Duration::from_secs(300))),
            Duration::from_secs(20)
        );
    }

    #[tokio::test]
    async fn permanent_errors_return_at_once_and_transient_ones_give_up_counted() {
        let mut calls = 0;
        let r: Result<(), E> = fast()
            .run(
                || {
                    calls += 1;
                    async { Err(E(Retry::Never)) }
                },
                |_, _, _| panic!("a permanent error must not be wrapped"),
            )
            .await;
        assert!(matches!(r, Err(E(Retry::Never))));
        assert_eq!(calls, 1);

        let mut calls = 0;
        let mut seen = None;
        let r: Result<(), E> = fast()
            .run(
                || {
                    calls += 1;
                    async { Err(E(Retry::After(None))) }
                },
                |e, attempts, _| {
                    seen = Some(attempts);
                    e
                },
            )
            .await;
        assert!(r.is_err());
        assert_eq!(calls, 6, "1 attempt + 5 retries");
        assert_eq!(seen, Some(6));
    }

    #[tokio::test]
    async fn the_time_budget_stops_retries() {
        let policy = RetryPolicy {
            max_retries: 100,
            min_delay: Duration::from_millis(40),
            max_delay: Duration::from_millis(40),
            jitter: 0.0,
            max_total: Duration::from_millis(100),
        };
        let mut calls = 0;
        let r: Result<(), E> = policy
            .run(
                || {
                    calls += 1;
                    async { Err(E(Retry::After(None))) }
                },
                |e, _, elapsed| {
                    assert!(elapsed < Duration::from_millis(400), "{elapsed:?}");
                    e
                },
            )
            .await;
        assert!(r.is_err());
        assert!(
            (2..=3).contains(&calls),
            "{calls} calls within a 100 ms budget"
        );
    }

    #[test]
    fn durations_read_and_write_as_text() {
        let p: RetryPolicy =
            toml::from_str("max_retries = 2\nmin_delay = \"250ms\"\nmax_total = \"30s\"")
                .expect("parse");
        assert_eq!(p.max_retries, 2);
        assert_eq!(p.min_delay, Duration::from_millis(250));
        assert_eq!(p.max_total, Duration::from_secs(30));
        assert_eq!(p.max_delay, RetryPolicy::default().max_delay);
        let json = serde_json::to_value(p).expect("json");
        assert_eq!(json["max_total"], "30s");
        assert!(toml::from_str::<RetryPolicy>("max_tries = 2").is_err());
        assert!(RetryPolicy { jitter: 1.5, ..p }.validate().is_err());
    }
}
