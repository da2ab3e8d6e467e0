# shellcheck shell=bash
# Points the real-engine tests (test-support's RealLakeFs) at the lakeFS whose LAKECTL_*
# variables `scripts/stack.sh up` exported. Source it, then: real_lakefs_env NAMESPACE-ROOT.
real_lakefs_env() {
  export LAKEFS_TEST_ENDPOINT="$LAKECTL_SERVER_ENDPOINT_URL"
  export LAKEFS_TEST_ACCESS_KEY_ID="$LAKECTL_CREDENTIALS_ACCESS_KEY_ID"
  export LAKEFS_TEST_SECRET_ACCESS_KEY="$LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY"
  export LAKEFS_TEST_NAMESPACE="$1"
}
