//! How a test that cannot run on this machine says so: loudly, and as a
//! failure where every test must run (CI sets [`REQUIRE_ALL_TESTS`]).

/// When this variable is set (to anything but `0`), a skip is a failure:
/// `.ci/run` sets it, so CI never passes a test it did not run.
pub const REQUIRE_ALL_TESTS: &str = "NETMOE_REQUIRE_ALL_TESTS";

/// Reports that `test` cannot run here because of `why`: a `*** SKIPPED`
/// banner on stderr, or a panic when [`REQUIRE_ALL_TESTS`] is set.
pub fn skip(test: &str, why: &str) {
    let required = std::env::var(REQUIRE_ALL_TESTS).is_ok_and(|v| v != "0");
    assert!(
        !required,
        "{test} cannot run here ({why}) and {REQUIRE_ALL_TESTS} requires every test to run"
    );
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
}
