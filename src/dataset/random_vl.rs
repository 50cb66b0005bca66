//! `random_vl`: random text (as `random`) plus `--image-num` generated PNG images of
//! `--image-width` x `--image-height` in mode `--image-format` (`RGB`, `RGBA` or `L`),
//! each a random solid colour with 1-5 random rectangles, ellipses or lines, sent as
//! `data:image/png;base64,...` `image_url` parts of one user message (evalscope).
//! evalscope sends only the first character of the text to a non-chat endpoint (a
//! bug); here a completions URL is refused with a message instead.

use anyhow::{bail, Result};
use base64::Engine as _;
use serde_json::json;

use super::config::{DatasetConfig, ImageSpec};
use super::prompt::Prompt;

fn channels(format: &str) -> Option<(usize, png::ColorType)> {
    match format {
        "RGB" => Some((3, png::ColorType::Rgb)),
        "RGBA" => Some((4, png::ColorType::Rgba)),
        "L" => Some((1, png::ColorType::Grayscale)),
        _ => None,
    }
}

/// Checks the image flags (called when the configuration is resolved).
pub fn check(spec: &ImageSpec) -> Result<()> {
    if channels(&spec.format).is_none() {
        bail!(
            "--image-format: `{}` is not supported; use RGB, RGBA or L",
            spec.format
        );
    }
    if spec.width == 0 || spec.height == 0 || spec.width > 8192 || spec.height > 8192 {
        bail!(
            "--image-width/--image-height: {}x{} must be 1..8192 pixels",
            spec.width,
            spec.height
        );
    }
    if spec.patch_size == 0 {
        bail!("--image-patch-size: must be at least 1");
    }
    Ok(())
}

/// Says what each random_vl request carries (logged once per run).
pub fn log_shape(image: &super::config::ImageSpec) {
    crate::telemetry::log::info(format!(
        "random_vl: {} {}x{} {} image(s) per request, about {} vision tokens each \
         (--image-patch-size {})",
        image.num,
        image.width,
        image.height,
        image.format,
        image_tokens(image),
        image.patch_size
    ));
}

/// Vision tokens of one image for a ViT with square patches (e.g. Qwen2-VL's 28 px).
pub fn image_tokens(spec: &ImageSpec) -> u64 {
    let p = spec.patch_size.max(1);
    u64::from(spec.width.div_ceil(p)) * u64::from(spec.height.div_ceil(p))
}

/// One PNG: a random background with 1-5 random shapes.
pub fn image(spec: &ImageSpec, rng: &mut fastrand::Rng) -> Result<Vec<u8>> {
    let Some((ch, color)) = channels(&spec.format) else {
        bail!("--image-format: `{}` is not supported", spec.format);
    };
    let (w, h) = (spec.width as i64, spec.height as i64);
    let mut px = vec![0u8; (w * h) as usize * ch];
    let colour = |rng: &mut fastrand::Rng| -> [u8; 4] { [rng.u8(..), rng.u8(..), rng.u8(..), 255] };
    let bg = colour(rng);
    for p in px.chunks_mut(ch) {
        p.copy_from_slice(&bg[..ch]);
    }
    let put = |px: &mut Vec<u8>, x: i64, y: i64, c: &[u8; 4]| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            let i = (y * w + x) as usize * ch;
            px[i..i + ch].copy_from_slice(&c[..ch]);
        }
    };
    for _ in 0..rng.usize(1..=5) {
        let c = colour(rng);
        let (x0, y0, x1, y1) = (rng.i64(0..w), rng.i64(0..h), rng.i64(0..w), rng.i64(0..h));
        let (lx, hx, ly, hy) = (x0.min(x1), x0.max(x1), y0.min(y1), y0.max(y1));
        match rng.u8(0..3) {
            0 => {
                for y in ly..=hy {
                    for x in lx..=hx {
                        put(&mut px, x, y, &c);
                    }
                }
            }
            1 => {
                let (cx, cy) = ((lx + hx) as f64 / 2.0, (ly + hy) as f64 / 2.0);
                let (rx, ry) = (
                    ((hx - lx) as f64 / 2.0).max(1.0),
                    ((hy - ly) as f64 / 2.0).max(1.0),
                );
                for y in ly..=hy {
                    for x in lx..=hx {
                        let (dx, dy) = ((x as f64 - cx) / rx, (y as f64 - cy) / ry);
                        if dx * dx + dy * dy <= 1.0 {
                            put(&mut px, x, y, &c);
                        }
                    }
                }
            }
            _ => {
                let steps = (hx - lx).max(hy - ly).max(1);
                for s in 0..=steps {
                    let x = x0 + (x1 - x0) * s / steps;
                    let y = y0 + (y1 - y0) * s / steps;
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
                        put(&mut px, x + dx, y + dy, &c);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, spec.width, spec.height);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header()?;
        wr.write_image_data(&px)?;
    }
    Ok(out)
}

pub fn generate(
    cfg: &DatasetConfig,
    chat: bool,
    count: u64,
    run_index: u64,
) -> Result<Vec<Prompt>> {
    if !chat {
        bail!(
            "--dataset random_vl sends images as chat message parts: use a chat URL \
             (…/v1/chat/completions) or --apply-chat-template"
        );
    }
    let spec = &cfg.image;
    let texts = super::random::generate(cfg, false, count, run_index)?;
    let mut rng =
        fastrand::Rng::with_seed(cfg.seed ^ run_index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED);
    let mut out = Vec::with_capacity(texts.len());
    for t in texts {
        let Prompt::Text(text) = t else { continue };
        let mut parts = vec![json!({"type": "text", "text": text})];
        for _ in 0..spec.num {
            let png = image(spec, &mut rng)?;
            let url = format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(png)
            );
            parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
        }
        out.push(Prompt::Messages(
            json!([{"role": "user", "content": parts}]),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(format: &str) -> ImageSpec {
        ImageSpec {
            width: 64,
            height: 48,
            format: format.into(),
            num: 2,
            patch_size: 28,
        }
    }

    #[test]
    fn pngs_decode_with_the_requested_size_and_mode() {
        let mut rng = fastrand::Rng::with_seed(1);
        for (f, ct) in [
            ("RGB", png::ColorType::Rgb),
            ("RGBA", png::ColorType::Rgba),
            ("L", png::ColorType::Grayscale),
        ] {
            let bytes = image(&spec(f), &mut rng).unwrap();
            let r = png::Decoder::new(std::io::Cursor::new(bytes))
                .read_info()
                .unwrap();
            let info = r.info();
            assert_eq!((info.width, info.height, info.color_type), (64, 48, ct));
        }
        assert_eq!(image_tokens(&spec("RGB")), 3 * 2);
        assert!(check(&spec("CMYK"))
            .unwrap_err()
            .to_string()
            .contains("--image-format"));
    }
}
