//! Retry policy: exponential backoff with jitter for 408/429/500-504 and connection errors,
//! honouring `Retry-After`, bounded in attempts and in total time. Other 4xx never retry.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{LakeFsError, Result};

/// Retry settings (serde-able; defaults: 5 retries, 1-20 s, 25% jitter, 2 minutes in all).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryConfig {
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// First delay.
    pub min_delay: Duration,
    /// Largest delay.
    pub max_delay: Duration,
    /// Relative jitter applied to each delay (0.25 = ±25%).
    pub jitter: f64,
    /// Total time budget, first attempt included; no retry starts after it.
    pub max_total: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 5,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(20),
            jitter: 0.25,
            max_total: Duration::from_secs(120),
        }
    }
}

impl RetryConfig {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The delay before retry number `retry` (0-based), honouring a server's Retry-After.
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

    /// Runs `attempt` until it succeeds, fails with a non-retryable error, or the budget ends.
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let mut retries = 0;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => {
                    let delay = self.delay(retries, retry_after(&e));
                    let out_of_budget = started.elapsed() + delay > self.max_total;
                    if retries >= self.max_retries || out_of_budget {
                        if retries == 0 {
                            return Err(e);
                        }
                        return Err(LakeFsError::RetriesExhausted {
                            last: Box::new(e),
                            attempts: retries + 1,
                            seconds: started.elapsed().as_secs_f64(),
                        });
                    }
                    tracing::warn!("{e}; retry {} in {delay:?}", retries + 1);
                    tokio::time::sleep(delay).await;
                    retries += 1;
                }
            }
        }
    }
}

fn retry_after(e: &LakeFsError) -> Option<Duration> {
    match e {
        LakeFsError::Server { retry_after, .. } => *retry_after,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let cfg = RetryConfig::default();
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
    async fn non_retryable_errors_return_at_once() {
        let mut calls = 0;
        let r: Result<()> = RetryConfig::default()
            .run(|| {
                calls += 1;
                async {
                    Err(LakeFsError::NotFound {
                        request: "GET /x".into(),
                        message: "no".into(),
                    })
                }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
