//! `[ui]`: the operator's branding and the default language.

use super::*;

/// Largest logo accepted (it is served from memory on every page view).
const MAX_LOGO_BYTES: u64 = 256 * 1024;

pub(super) fn ui(r: &mut Reader, root: &Table<'_>) -> UiConfig {
    let t = r.table(
        root,
        "ui",
        &[
            "clinic_name",
            "logo_file",
            "primary_color",
            "support_contact",
            "default_language",
        ],
    );
    let clinic_name = r.string(&t, "clinic_name", "Vestibule").trim().to_string();
    if clinic_name.is_empty() || clinic_name.chars().count() > 80 {
        r.problem(&t.at("clinic_name"), "must be a name of 1 to 80 characters");
    }
    let logo = r
        .optional_string(&t, "logo_file")
        .and_then(|p| logo_file(r, &t.at("logo_file"), PathBuf::from(p)));
    let primary_color = r
        .string(&t, "primary_color", "#0b5cad")
        .trim()
        .to_ascii_lowercase();
    match parse_hex_color(&primary_color) {
        None => r.problem(
            &t.at("primary_color"),
            format!("{primary_color:?} is not a colour written as \"#rrggbb\""),
        ),
        Some(rgb) => {
            let ratio = contrast_with_white(rgb);
            if ratio < 4.5 {
                r.problem(
                    &t.at("primary_color"),
                    format!(
                        "{primary_color} is too light: its contrast with white is {ratio:.1}:1, and buttons and links need at least 4.5:1 to be readable; choose a darker shade"
                    ),
                );
            }
        }
    }
    let support_contact = r
        .optional_string(&t, "support_contact")
        .map(|s| s.trim().to_string());
    if support_contact
        .as_ref()
        .is_some_and(|s| s.chars().count() > 200)
    {
        r.problem(&t.at("support_contact"), "must be at most 200 characters");
    }
    let default_language = r
        .string(&t, "default_language", "en")
        .trim()
        .to_ascii_lowercase();
    if crate::core::lang::Lang::from_tag(&default_language).is_none()
        || default_language.contains(['-', '_'])
    {
        let known: Vec<&str> = crate::core::lang::ALL.iter().map(|l| l.code()).collect();
        r.problem(
            &t.at("default_language"),
            format!("{default_language:?} is not one of {}", known.join(", ")),
        );
    }
    UiConfig {
        clinic_name,
        logo,
        primary_color,
        support_contact,
        default_language,
    }
}

/// Reads and checks a logo: PNG or SVG, at most [`MAX_LOGO_BYTES`].
fn logo_file(r: &mut Reader, key: &str, path: PathBuf) -> Option<LogoFile> {
    let size = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m.len(),
        _ => {
            r.problem(key, format!("file {} does not exist", path.display()));
            return None;
        }
    };
    if size > MAX_LOGO_BYTES {
        r.problem(
            key,
            format!(
                "file {} is {size} bytes; a logo may have at most {MAX_LOGO_BYTES} (256 KiB)",
                path.display()
            ),
        );
        return None;
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            r.problem(key, format!("file {} cannot be read: {e}", path.display()));
            return None;
        }
    };
    let content_type = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
        && std::str::from_utf8(&bytes).is_ok_and(|s| s.contains("<svg"))
    {
        "image/svg+xml"
    } else {
        r.problem(
            key,
            format!("file {} is neither a PNG nor an SVG image", path.display()),
        );
        return None;
    };
    Some(LogoFile {
        path,
        bytes: bytes.into(),
        content_type,
    })
}

/// `#rrggbb` as three bytes.
pub(super) fn parse_hex_color(s: &str) -> Option<[u8; 3]> {
    let hex = s.strip_prefix('#')?;
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

/// WCAG 2 contrast ratio of a colour against white.
pub(super) fn contrast_with_white(rgb: [u8; 3]) -> f64 {
    let lin = |c: u8| {
        let c = c as f64 / 255.0;
        if c <= 0.03928 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let l = 0.2126 * lin(rgb[0]) + 0.7152 * lin(rgb[1]) + 0.0722 * lin(rgb[2]);
    1.05 / (l + 0.05)
}
