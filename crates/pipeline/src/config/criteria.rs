//! Promotion criteria as the configuration writes them: `"<metric> <op> <threshold>"`.

/// One promotion criterion: `<metric> <op> <threshold>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    /// Metric name as logged in MLflow (`val_iou`, `loss`, ...).
    pub metric: String,
    /// `>=`, `>`, `<=` or `<`.
    pub op: String,
    /// The threshold.
    pub threshold: f64,
}

impl Criterion {
    /// Parses `"val_iou >= 0.5"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [metric, op, value] = parts[..] else {
            return Err("write \"<metric> <op> <value>\", e.g. \"val_iou >= 0.5\"".into());
        };
        if !matches!(op, ">=" | ">" | "<=" | "<") {
            return Err(format!("operator {op:?}: use >=, >, <= or <"));
        }
        let threshold: f64 = value
            .parse()
            .map_err(|_| format!("threshold {value:?} is not a number"))?;
        Ok(Self {
            metric: metric.to_string(),
            op: op.to_string(),
            threshold,
        })
    }

    /// Whether `value` meets the criterion.
    pub fn holds(&self, value: f64) -> bool {
        match self.op.as_str() {
            ">=" => value >= self.threshold,
            ">" => value > self.threshold,
            "<=" => value <= self.threshold,
            _ => value < self.threshold,
        }
    }
}

impl std::fmt::Display for Criterion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op, self.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_parse_and_hold() {
        let c = Criterion::parse("val_iou >= 0.5").expect("criterion");
        assert!(c.holds(0.5) && !c.holds(0.49));
        assert!(Criterion::parse("loss < 0.3").expect("lt").holds(0.2));
        assert!(Criterion::parse("val_iou => 0.5").is_err());
        assert!(Criterion::parse("val_iou >= high").is_err());
    }
}
