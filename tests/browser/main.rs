//! Browser end-to-end tests: the real `vestibule serve` (spawned by the e2e harness)
//! driven by headless Chromium through `chromedriver` (WebDriver, via fantoccini), the
//! way staff and patients meet the pages: typing, Tab and Enter, reading the QR code
//! off the screen like a phone would, clicking the download link.
//!
//! Every page is checked with axe-core (vendored in `vendor/axe.min.js`, MPL-2.0): no
//! violation of impact serious or critical is allowed. Every page is photographed at
//! desktop (1280×900) and phone (390×844) size into `target/screenshots/`, with the
//! axe findings of lower impact in `target/screenshots/axe-report.txt`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (or `CHROMIUM_BIN` and
//! `CHROMEDRIVER` pointing at them). The tests take turns with one browser at a time.

#[path = "../e2e/harness.rs"]
mod harness;

#[path = "../e2e/flows.rs"]
mod flows;

mod authenticator;
mod chrome;
mod journeys;
mod keys;
mod selfservice;
