//! The scrubber the fuzz targets share: the same identities and environment as the tests.

#[path = "../../tests/support/corpus.rs"]
#[allow(dead_code, clippy::all)]
mod corpus;

use std::sync::LazyLock;

use consentry_scrubbers::Scrubber;

pub static SCRUBBER: LazyLock<Scrubber> = LazyLock::new(|| match corpus::builder().build() {
    Ok(scrubber) => scrubber,
    Err(err) => panic!("the test scrubber does not build: {err}"),
});
