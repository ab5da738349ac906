//! The first step: requests refused before anything is looked up — `TRACE` (it would
//! echo cookies back to whoever reads the answer) and header sections over the limit.

use http::Request;

use crate::app::App;
use crate::http::error::GatewayError;
use crate::router;

/// Refuses what no path, own or upstream, may receive.
#[inline]
pub(super) fn screen<B>(app: &App, req: &Request<B>) -> Result<(), GatewayError> {
    // TRACE echoes the request (cookies included) back to whoever can read the answer,
    // and nothing behind a gateway needs it: refused everywhere, before anything else.
    if is_trace(req.method()) {
        return Err(GatewayError::MethodNotAllowed);
    }
    if router::header_bytes(req.headers()) > app.cfg.server.max_request_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    Ok(())
}

/// `TRACE`, and `TRACK` (the same thing under IIS's name).
fn is_trace(method: &http::Method) -> bool {
    method == http::Method::TRACE || method.as_str() == "TRACK"
}
