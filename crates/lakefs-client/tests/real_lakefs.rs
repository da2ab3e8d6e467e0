//! The conformance suite (tests/suite) against lakeFS itself. Built only with the
//! `real-lakefs-tests` feature; the test command starts lakeFS (`scripts/stack.sh up lakefs`,
//! then `scale`) and runs it with `LAKEFS_TEST_ENDPOINT`, `LAKEFS_TEST_ACCESS_KEY_ID`,
//! `LAKEFS_TEST_SECRET_ACCESS_KEY` and `LAKEFS_TEST_NAMESPACE` (the storage namespace root of
//! the test repositories) set. Without them it fails loudly, naming the command that starts one.

mod suite;

use suite::Target;
use test_support::RealLakeFs;

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

async fn real_target() -> RealTarget {
    let lakefs = RealLakeFs::required();
    RealTarget(Target {
        client: lakefs.client(2).await,
        namespace_root: lakefs.namespace_root.clone(),
        local: false,
    })
}

conformance_tests!(real_target);
