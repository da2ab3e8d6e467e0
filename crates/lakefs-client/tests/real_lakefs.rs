//! The conformance suite (tests/suite) against a real lakeFS. Built only with the
//! `real-lakefs-tests` feature, which the test command turns on when LAKEFS_TEST_ENDPOINT,
//! LAKEFS_TEST_ACCESS_KEY_ID and LAKEFS_TEST_SECRET_ACCESS_KEY are set (it prints one line that
//! this suite was not run otherwise). LAKEFS_TEST_NAMESPACE: the storage namespace root of the
//! test repositories (default `local://seg-mlops-tests`).

mod suite;

use lakefs_client::LakeFsClientBuilder;
use suite::Target;

struct RealTarget(Target);

impl std::ops::Deref for RealTarget {
    type Target = Target;
    fn deref(&self) -> &Target {
        &self.0
    }
}

impl RealTarget {
    async fn finish(self) {}
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the real-lakeFS suite needs LAKEFS_TEST_ENDPOINT, LAKEFS_TEST_ACCESS_KEY_ID and LAKEFS_TEST_SECRET_ACCESS_KEY (start one with `docker compose --profile local-lakefs up -d`)")
    })
}

async fn real_target() -> RealTarget {
    let client = LakeFsClientBuilder::new(var("LAKEFS_TEST_ENDPOINT"))
        .credentials(
            var("LAKEFS_TEST_ACCESS_KEY_ID"),
            var("LAKEFS_TEST_SECRET_ACCESS_KEY"),
        )
        .retry(test_support::fast_retry())
        .page_size(2)
        .build()
        .await
        .expect("client");
    client
        .health()
        .await
        .expect("the real lakeFS answers its health check");
    RealTarget(Target {
        client,
        namespace_root: std::env::var("LAKEFS_TEST_NAMESPACE")
            .unwrap_or_else(|_| "local://seg-mlops-tests".into()),
        local: false,
    })
}

conformance_tests!(real_target);
