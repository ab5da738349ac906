//! The enrollment QR code as a PNG (qrcode for the modules, png for the file), sized
//! for a phone to scan from a laptop screen.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module and the quiet zone in modules.
const SCALE: usize = 6;
const QUIET: usize = 4;

/// The PNG as base64 and its side length in pixels.
pub fn png_base64(data: &str) -> Option<(String, u32)> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).ok()?;
    let w = code.width();
    let side = (w + 2 * QUIET) * SCALE;
    let mut px = vec![255u8; side * side];
    for y in 0..w {
        for x in 0..w {
            if code[(x, y)] == Color::Dark {
                for dy in 0..SCALE {
                    let row = (y + QUIET) * SCALE + dy;
                    let start = row * side + (x + QUIET) * SCALE;
                    px[start..start + SCALE].fill(0);
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().ok()?;
        writer.write_image_data(&px).ok()?;
        writer.finish().ok()?;
    }
    Some((STANDARD.encode(out), side as u32))
}
