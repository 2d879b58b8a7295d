//! Text for the charts: a `plotters` drawing backend that wraps [`BitMapBackend`] and lays out
//! and rasterises text itself with `ab_glyph` and the embedded DejaVu Sans (the `dejavu`
//! crate), so charts look the same on a machine with no fonts installed.
//!
//! plotters 0.3.7's own `ab_glyph` text drops each glyph's left side bearing, which makes
//! uneven gaps ("64.1 8", "dass" for "class"); here each glyph is placed at its pen position
//! plus its bearing, with kerning, as a text renderer should. Everything but text goes to the
//! wrapped backend unchanged.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use plotters::prelude::{BitMapBackend, DrawingBackend};
use plotters_backend::{
    text_anchor::{HPos, VPos},
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind, FontStyle,
};

type BackendResult<E> = Result<(), DrawingErrorKind<E>>;

/// DejaVu Sans regular and bold, parsed once.
fn fonts() -> &'static (FontRef<'static>, FontRef<'static>) {
    static FONTS: OnceLock<(FontRef<'static>, FontRef<'static>)> = OnceLock::new();
    FONTS.get_or_init(|| {
        let parse = |bytes| FontRef::try_from_slice(bytes).expect("the embedded DejaVu Sans fonts are valid TrueType");
        (parse(dejavu::sans::regular()), parse(dejavu::sans::bold()))
    })
}

/// A [`BitMapBackend`] whose text is drawn by [`TextBackend::draw_text`].
pub(crate) struct TextBackend<'a> {
    inner: BitMapBackend<'a>,
}

impl<'a> TextBackend<'a> {
    pub(crate) fn new(inner: BitMapBackend<'a>) -> TextBackend<'a> {
        TextBackend { inner }
    }
}

/// Width and height in pixels of `text` in `font` at line height `size`, and the baseline's
/// distance from the top.
fn measure(font: &FontRef<'static>, size: f32, text: &str) -> (f32, f32, f32) {
    let scaled = font.as_scaled(PxScale::from(size));
    let mut width = 0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            width += scaled.kern(p, id);
        }
        width += scaled.h_advance(id);
        prev = Some(id);
    }
    (width, scaled.ascent() - scaled.descent(), scaled.ascent())
}

fn font_for(style: FontStyle) -> &'static FontRef<'static> {
    let (regular, bold) = fonts();
    if matches!(style, FontStyle::Bold) {
        bold
    } else {
        regular
    }
}

impl<'a> DrawingBackend for TextBackend<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> BackendResult<Self::ErrorType> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> BackendResult<Self::ErrorType> {
        self.inner.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> BackendResult<Self::ErrorType> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(&mut self, from: BackendCoord, to: BackendCoord, style: &S) -> BackendResult<Self::ErrorType> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> BackendResult<Self::ErrorType> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(&mut self, path: I, style: &S) -> BackendResult<Self::ErrorType> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(&mut self, center: BackendCoord, radius: u32, style: &S, fill: bool) -> BackendResult<Self::ErrorType> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(&mut self, vert: I, style: &S) -> BackendResult<Self::ErrorType> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> BackendResult<Self::ErrorType> {
        self.inner.blit_bitmap(pos, size, src)
    }

    /// Lays `text` out on one line anchored at `pos` as `style.anchor()` says, rotated by
    /// `style.transform()`, and blends each glyph's coverage in `style.color()`.
    fn draw_text<S: BackendTextStyle>(&mut self, text: &str, style: &S, pos: BackendCoord) -> BackendResult<Self::ErrorType> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let font = font_for(style.style());
        let size = style.size() as f32;
        let (width, height, ascent) = measure(font, size, text);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0.0,
            HPos::Right => -width,
            HPos::Center => -width / 2.0,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0.0,
            VPos::Center => -height / 2.0,
            VPos::Bottom => -height,
        };
        let transform = style.transform();
        let scaled = font.as_scaled(PxScale::from(size));
        let (mut pen, mut prev) = (dx, None);
        let mut pixels = Vec::new();
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = prev {
                pen += scaled.kern(p, id);
            }
            let glyph = id.with_scale_and_position(PxScale::from(size), point(pen, dy + ascent));
            if let Some(outline) = font.outline_glyph(glyph) {
                let bounds = outline.px_bounds();
                outline.draw(|x, y, coverage| {
                    let (gx, gy) = (bounds.min.x as i32 + x as i32, bounds.min.y as i32 + y as i32);
                    pixels.push((transform.transform(gx, gy), coverage));
                });
            }
            pen += scaled.h_advance(id);
            prev = Some(id);
        }
        for ((x, y), coverage) in pixels {
            if coverage > 0.0 {
                let alpha = color.alpha * f64::from(coverage.min(1.0));
                self.inner.draw_pixel((pos.0 + x, pos.1 + y), BackendColor { alpha, rgb: color.rgb })?;
            }
        }
        Ok(())
    }

    fn estimate_text_size<S: BackendTextStyle>(&self, text: &str, style: &S) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        let (width, height, _) = measure(font_for(style.style()), style.size() as f32, text);
        Ok((width.ceil() as u32, height.ceil() as u32))
    }
}

#[cfg(test)]
mod tests {
    use plotters::{
        prelude::*,
        style::text_anchor::{HPos, Pos, VPos},
    };

    use super::*;

    #[test]
    fn text_is_measured_by_advances_and_drawn_with_bearings() {
        let (regular, _) = fonts();
        // DejaVu Sans has tabular figures: every digit advances the same, so "11" measures
        // twice "1" and "18" the same as "11".
        let (one, _, _) = measure(regular, 20.0, "1");
        assert!((measure(regular, 20.0, "11").0 - 2.0 * one).abs() < 1e-3);
        assert_eq!(measure(regular, 20.0, "18").0, measure(regular, 20.0, "11").0);

        // "1" drawn left-aligned at x = 10 starts its ink after its left side bearing (plotters'
        // own text drops it and starts at x = 10).
        let glyph = regular.glyph_id('1').with_scale_and_position(20.0, point(0.0, 0.0));
        let bearing = regular.outline_glyph(glyph).unwrap().px_bounds().min.x as i32;
        assert!(bearing >= 1, "the test needs a glyph with a visible bearing");
        let (w, h) = (60u32, 40u32);
        let mut rgb = vec![255u8; (w * h * 3) as usize];
        {
            let mut backend = TextBackend::new(BitMapBackend::with_buffer(&mut rgb, (w, h)));
            let style = TextStyle::from(("sans-serif", 20).into_font()).pos(Pos::new(HPos::Left, VPos::Top));
            backend.draw_text("1", &style, (10, 5)).unwrap();
            backend.present().unwrap();
        }
        let ink_x = (0..(w * h) as usize).filter(|&i| rgb[3 * i] < 255).map(|i| (i % w as usize) as i32).min().unwrap();
        // The bearing's pixel column is partly covered, so the first ink may be one further.
        assert!((10 + bearing..=11 + bearing).contains(&ink_x), "ink from x = {ink_x}, bearing {bearing}");
    }
}
