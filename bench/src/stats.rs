//! Medians and the formatting of measured series.

/// Repeated measurements of one variant, in seconds.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub values: Vec<f64>,
    /// Why runs are missing or odd (timeouts, failed modules…).
    pub notes: Vec<String>,
}

impl Series {
    pub fn push(&mut self, v: f64) {
        self.values.push(v);
    }

    pub fn note(&mut self, n: impl Into<String>) {
        let n = n.into();
        if !self.notes.contains(&n) {
            self.notes.push(n);
        }
    }

    /// The median (mean of the middle two for an even count).
    pub fn median(&self) -> Option<f64> {
        median(&self.values)
    }

    /// `min–max` of the runs, for the table.
    pub fn spread(&self) -> String {
        let min = self.values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self
            .values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        if self.values.is_empty() {
            "–".into()
        } else {
            format!("{min:.3}–{max:.3}")
        }
    }
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// `a / b` as `1.23×`, or `–` when either side is missing.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

pub fn secs(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.3}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }

    #[test]
    fn ratio_and_spread_format() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50×");
        assert_eq!(ratio(None, Some(2.0)), "–");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "–");
        let s = Series {
            values: vec![1.0, 1.5],
            notes: vec![],
        };
        assert_eq!(s.spread(), "1.000–1.500");
    }
}
