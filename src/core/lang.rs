//! The languages the pages are written in, and how a language tag names one. A small
//! table at the bottom, so that both the configuration check and the pages can use it.

/// A language the pages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
    Es,
}

/// Every supported language, in catalogue order.
pub const ALL: [Lang; 3] = [Lang::En, Lang::De, Lang::Es];

impl Lang {
    /// The BCP 47 code, as used in `<html lang>`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
            Lang::Es => "es",
        }
    }

    /// A language from a tag such as `de`, `de-CH` or `ES` (primary subtag only).
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or("");
        ALL.into_iter()
            .find(|l| l.code().eq_ignore_ascii_case(primary))
    }

    /// The position in [`ALL`] (the catalogues are kept in this order).
    pub fn index(self) -> usize {
        self as usize
    }
}
