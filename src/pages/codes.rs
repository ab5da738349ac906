//! The backup-codes page, shown once after enrollment or regeneration, with the codes
//! as a downloadable text file.

use http::{Response, StatusCode};

use super::Ctx;
use super::render::{self, BackupCodesPage};
use crate::http::body::Body;

/// The page listing `codes`; `enrolled` chooses the wording after enrollment.
pub fn page(
    ctx: &Ctx<'_>,
    codes: &[String],
    enrolled: bool,
    continue_href: &str,
    set_cookies: &[String],
) -> Response<Body> {
    let text = format!(
        "{}\r\n{}\r\n\r\n{}\r\n",
        ctx.tr.f("codes.file_title", &ctx.app.cfg.totp.issuer),
        ctx.t("codes.file_note"),
        codes.join("\r\n")
    );
    let download = format!("data:text/plain;charset=utf-8,{}", super::encode_rd(&text));
    let page = BackupCodesPage {
        brand: &ctx.app.brand,
        tr: ctx.tr,
        enrolled,
        codes,
        download_href: &download,
        continue_href,
    };
    render::html(StatusCode::OK, &page, ctx.tls, set_cookies)
}
